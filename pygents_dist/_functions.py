"""The Redis Functions library: the send API another language calls, and its install.

Redis 7 keeps functions server-wide (``FUNCTION LOAD``; every database and namespace of one
server shares them). Workers install the library ``pygents_<wire version>`` (``pygents_1``),
whose functions are named ``pyg<wire version>_...``. Each takes the keys it touches as KEYS
(so a cluster could route it and an ACL check it) and the agent's name as ``ARGV[1]``; it
refuses keys that are not that agent's under one namespace (``BADKEYS``), bad arguments
(``BADARGS``) and, where the Python client does, an agent no worker declared
(``UNKNOWNAGENT``)::

    pyg1_send     KEYS turns, owner, ready, agents   ARGV agent, then per turn: id, envelope,
                                                     signature ('' for none)
    pyg1_cancel   KEYS cancel, done                  ARGV agent, turn id
    pyg1_pause    KEYS state, agents                 ARGV agent
    pyg1_resume   KEYS state, ready, agents          ARGV agent
    pyg1_version  (no keys, read-only)               the library's revision

The functions are composed of the scripts Python clients run (``lua/send.lua``,
``cancel.lua``, ``pause.lua``, ``resume.lua``, read by ``_scripts.lua_text``): a script and its
function share one source. ``docs/wire.md`` is the contract.

Versions: the wire version is in the names (a new wire version is a new library beside the
old one). ``REVISION`` counts changes within one wire version; a new revision only adds
(functions, optional arguments), so a newer library serves older senders. ``install`` loads
the library when Redis has none, replaces an older revision and leaves a newer one (never
downgrading). Not on a Redis Cluster: ``pyg1_send`` and ``pyg1_resume`` touch keys of several slots
there (``install`` refuses; senders use the plain commands of ``docs/wire.md``).
"""

from __future__ import annotations

import dataclasses
import logging

from pygents_dist._keys import KEY_PREFIX
from pygents_dist._redis_errors import first_error
from pygents_dist._scripts import lua_text
from pygents_dist._streams import SIGNALS_CAP
from pygents_dist._transport import Transport
from pygents_dist._wire import WIRE_VERSION
from pygents_dist.errors import RedisCommandError

__all__ = ["FUNCTIONS", "LIBRARY", "REVISION", "Installed", "install", "library_source"]

#: The library's name, and the prefix of its functions' names.
LIBRARY = f"pygents_{WIRE_VERSION}"
_PREFIX = f"pyg{WIRE_VERSION}"
#: The library's revision within its wire version: bump it whenever its source changes
#: (``tests/dist/test_functions.py`` records each revision's source).
REVISION = 1
#: The functions, by name: their KEYS and ARGV, as documented in ``docs/wire.md``.
FUNCTIONS = {
    f"{_PREFIX}_send": "KEYS turns, owner, ready, agents; ARGV agent, then per turn: id, "
    "envelope, signature ('' for none)",
    f"{_PREFIX}_cancel": "KEYS cancel, done; ARGV agent, turn id",
    f"{_PREFIX}_pause": "KEYS state, agents; ARGV agent",
    f"{_PREFIX}_resume": "KEYS state, ready, agents; ARGV agent",
    f"{_PREFIX}_version": "no keys, no arguments (FCALL_RO)",
}
#: How many times ``install`` reads and loads when other workers load at the same moment.
_ATTEMPTS = 3

_log = logging.getLogger("pygents_dist.functions")

_LIBRARY = r"""#!lua name=<library>
-- pygents wire version <wire>, library revision <revision>. Composed by
-- pygents_dist/_functions.py of pygents_dist/lua/*.lua; the contract is docs/wire.md.
local REVISION = <revision>
local SIGNALS_CAP = '<cap>'
local KEY_PREFIX = '<prefix>'

local function send(KEYS, ARGV)
<send.lua>
end

local function cancel(KEYS, ARGV)
<cancel.lua>
end

local function pause(KEYS, ARGV)
<pause.lua>
end

local function resume(KEYS, ARGV)
<resume.lua>
end

-- A key of the agent (hash tag {agent}) or one the namespace shares, by its last part.
local AGENT, SHARED = 1, 2

-- nil when args[1] names an agent and keys are, in order, the keys of layout for that agent
-- under one namespace ([<namespace>:]pyg1); else the error reply saying what is wrong.
local function bad_keys(fname, keys, args, layout)
  local agent = args[1]
  if type(agent) ~= 'string' or #agent < 1 or #agent > 200 or string.find(agent, '[{}%s]') then
    return redis.error_reply('BADARGS ' .. fname .. ': ARGV[1] must be the agent name ' ..
      '(1-200 characters without braces or whitespace)')
  end
  local names, want = {}, {}
  for i, key in ipairs(layout) do
    names[i] = key[2]
    want[i] = ':' .. key[2]
    if key[1] == AGENT then want[i] = ':{' .. agent .. '}' .. want[i] end
  end
  local usage = fname .. ' takes ' .. #layout .. ' keys: ' .. table.concat(names, ', ') ..
    ', of agent ' .. agent .. ' under one namespace'
  if #keys ~= #layout then
    return redis.error_reply('BADKEYS ' .. usage .. ' (got ' .. #keys .. ')')
  end
  local first = keys[1]
  local base = string.sub(first, 1, #first - #want[1])
  if #first <= #want[1] or string.sub(first, #base + 1) ~= want[1]
      or (base ~= KEY_PREFIX and string.sub(base, -#KEY_PREFIX - 1) ~= ':' .. KEY_PREFIX) then
    return redis.error_reply('BADKEYS ' .. usage .. '; KEYS[1] is ' .. first ..
      ', expected [<namespace>:]' .. KEY_PREFIX .. want[1])
  end
  for i = 2, #keys do
    if keys[i] ~= base .. want[i] then
      return redis.error_reply('BADKEYS ' .. usage .. '; KEYS[' .. i .. '] is ' .. keys[i] ..
        ', expected ' .. base .. want[i])
    end
  end
  return nil
end

-- nil when a worker declared the agent (it is in the agents hash), or it is an instance
-- '<kind>/<key>' of a declared kind; else the error reply.
local function unknown_agent(fname, agents, agent)
  if redis.call('HEXISTS', agents, agent) == 1 then return nil end
  local cut = string.find(agent, '/', 1, true)
  if cut and cut > 1 and cut < #agent
      and redis.call('HEXISTS', agents, string.sub(agent, 1, cut - 1)) == 1 then
    return nil
  end
  return redis.error_reply('UNKNOWNAGENT ' .. fname .. ': no worker has declared an agent ' ..
    'named ' .. agent .. ' (is a worker serving it, with the same namespace?)')
end

redis.register_function{
  function_name = '<p>_send',
  description = 'Append turns to an agent and wake the workers unless it has an owner. ' ..
    'KEYS turns, owner, ready, agents; ARGV agent, then per turn: id, envelope, signature.',
  callback = function(keys, args)
    local layout = {{AGENT, 'turns'}, {AGENT, 'owner'}, {SHARED, 'ready'}, {SHARED, 'agents'}}
    local bad = bad_keys('<p>_send', keys, args, layout)
    if bad then return bad end
    if #args < 4 or (#args - 1) % 3 ~= 0 then
      return redis.error_reply('BADARGS <p>_send: ARGV is the agent, then per turn: id, ' ..
        'envelope, signature (empty for none); got ' .. #args .. ' arguments')
    end
    for i = 2, #args, 3 do
      if args[i] == '' or args[i + 1] == '' then
        return redis.error_reply('BADARGS <p>_send: turn ' .. ((i + 1) / 3) ..
          ' has an empty id or envelope')
      end
    end
    bad = unknown_agent('<p>_send', keys[4], args[1])
    if bad then return bad end
    local argv = {SIGNALS_CAP, args[1], (#args - 1) / 3}
    for i = 2, #args do argv[#argv + 1] = args[i] end
    return send({keys[3], keys[1], keys[2]}, argv)
  end,
}

redis.register_function{
  function_name = '<p>_cancel',
  description = 'Ask the workers to cancel a turn; 0 when it already finished. ' ..
    'KEYS cancel, done; ARGV agent, turn id.',
  callback = function(keys, args)
    local bad = bad_keys('<p>_cancel', keys, args, {{AGENT, 'cancel'}, {AGENT, 'done'}})
    if bad then return bad end
    if #args ~= 2 or args[2] == '' then
      return redis.error_reply('BADARGS <p>_cancel: ARGV is the agent and the turn id')
    end
    return cancel(keys, {args[2]})
  end,
}

redis.register_function{
  function_name = '<p>_pause',
  description = 'Pause an agent for every worker. KEYS state, agents; ARGV agent.',
  callback = function(keys, args)
    local bad = bad_keys('<p>_pause', keys, args, {{AGENT, 'state'}, {SHARED, 'agents'}})
      or unknown_agent('<p>_pause', keys[2], args[1])
    if bad then return bad end
    return pause({keys[1]}, {})
  end,
}

redis.register_function{
  function_name = '<p>_resume',
  description = 'Let a paused agent run again. KEYS state, ready, agents; ARGV agent.',
  callback = function(keys, args)
    local layout = {{AGENT, 'state'}, {SHARED, 'ready'}, {SHARED, 'agents'}}
    local bad = bad_keys('<p>_resume', keys, args, layout)
      or unknown_agent('<p>_resume', keys[3], args[1])
    if bad then return bad end
    return resume({keys[1], keys[2]}, {SIGNALS_CAP, args[1]})
  end,
}

redis.register_function{
  function_name = '<p>_version',
  description = 'The revision of this library (wire version <wire>).',
  flags = {'no-writes'},
  callback = function() return REVISION end,
}
"""


def library_source() -> str:
    """The library's Lua source, as ``FUNCTION LOAD`` takes it."""
    text = (
        _LIBRARY.replace("<library>", LIBRARY)
        .replace("<wire>", str(WIRE_VERSION))
        .replace("<revision>", str(REVISION))
        .replace("<cap>", str(SIGNALS_CAP))
        .replace("<prefix>", KEY_PREFIX)
        .replace("<p>", _PREFIX)
    )
    for name in ("send", "cancel", "pause", "resume"):
        text = text.replace(f"<{name}.lua>", lua_text(name))
    return text


@dataclasses.dataclass(frozen=True, slots=True)
class Installed:
    """What ``install`` found and left.

    Attributes:
        found: the revision Redis had before (None: no library; 0: one without a version).
        revision: the revision Redis has now: ``REVISION``, or a newer one left in place
            (an older one only if older workers kept replacing it while this one loaded).
    """

    found: int | None
    revision: int | None

    @property
    def changed(self) -> bool:
        """Whether the library changed (this install loaded it)."""
        return self.found != self.revision


async def loaded_revision(transport: Transport) -> int | None:
    """The revision of the library Redis has (None: none; 0: one without a version)."""
    replies = await transport.execute_raw(
        [
            ("FUNCTION", "LIST", "LIBRARYNAME", LIBRARY),
            ("FCALL_RO", f"{_PREFIX}_version", 0),
        ],
        "function list",
    )
    first_error(replies[:1], "function list")
    if not replies[0]:
        return None
    revision = replies[1]
    return revision if isinstance(revision, int) else 0


async def install(transport: Transport) -> Installed:
    """Make sure Redis has this library, or a newer revision of it.

    Loads it when missing, replaces an older revision, and leaves a newer one alone. Workers
    starting together may load at the same moment: after a load Redis refused (another
    worker's came first) or another worker's older load undid, the revision is read again
    and the load tried again, a few times.

    Raises:
        RedisCommandError: Redis refused (``RedisPermissionError`` when the ACL does; an
            ``ERR unknown command`` before Redis 7), or Redis is a cluster (code
            ``CLUSTER``: the functions span slots there; senders use plain commands).
        ConnectionLostError: Redis is unreachable.
    """
    if await transport.is_cluster():
        raise RedisCommandError(
            f"the Functions library {LIBRARY} is not for a Redis Cluster (its functions touch "
            "keys of several slots): send with plain commands there (docs/wire.md)",
            code="CLUSTER",
            operation="function load",
        )
    first = found = await loaded_revision(transport)
    attempt = 0
    while found is None or found < REVISION:
        attempt += 1
        if attempt > _ATTEMPTS:
            _log.warning("%s: revision %s stayed in place of %d", LIBRARY, found, REVISION)
            break
        load = ("FUNCTION", "LOAD") if found is None else ("FUNCTION", "LOAD", "REPLACE")
        [reply] = await transport.execute_raw([(*load, library_source())], "function load")
        found = await loaded_revision(transport)
        if isinstance(reply, Exception) and (
            found is None or (found < REVISION and attempt == _ATTEMPTS)
        ):
            first_error([reply], "function load")
    return Installed(first, found)
