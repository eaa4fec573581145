"""Throwaway TLS files for a private ``redis-server``: a CA and a server certificate for
127.0.0.1/localhost that it signed, written by the ``openssl`` CLI."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

_CA_CONF = """\
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
CN = pygents_dist test CA
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""

_SERVER_EXT = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def _openssl(args: str, cwd: Path) -> None:
    cmd = ["openssl", *args.split()]
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, timeout=30, check=False)
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace")
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {err}")


def _make_tls_files(directory: Path) -> None:
    """Write a throwaway CA (ca.crt) and a server cert for 127.0.0.1/localhost it signed."""
    (directory / "ca.cnf").write_text(_CA_CONF)
    (directory / "server.ext").write_text(_SERVER_EXT)
    key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -noenc"
    _openssl(f"req -x509 -new -config ca.cnf {key} -keyout ca.key -out ca.crt -days 2", directory)
    _openssl(
        f"req -new -config ca.cnf -subj /CN=localhost {key} -keyout server.key -out server.csr",
        directory,
    )
    serial = int.from_bytes(os.urandom(8), "big")
    _openssl(
        f"x509 -req -in server.csr -CA ca.crt -CAkey ca.key -set_serial {serial} -days 2"
        " -extfile server.ext -out server.crt",
        directory,
    )
