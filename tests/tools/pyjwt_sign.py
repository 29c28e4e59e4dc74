"""Signs JWTs with PyJWT for the jwt-auth Envoy tests: an implementation independent of
the filter's, using the same fixed test keys as filters/jwt-auth/src/fixtures.rs.

Usage: pyjwt_sign.py '<json>' where the JSON is a list of
{"alg": "RS256", "claims": {...}, "headers": {"kid": "rsa-1"}}; prints one token a line.
"""

import json
import pathlib
import sys

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "filters" / "jwt-auth" / "fixtures"


def key_for(alg):
    if alg[:2] in ("RS", "PS"):
        pem = (FIXTURES / "rsa-1.pem").read_bytes()
        return serialization.load_pem_private_key(pem, password=None)
    if alg == "ES256":
        return ec.derive_private_key(int.from_bytes(b"\x11" * 32, "big"), ec.SECP256R1())
    if alg == "ES384":
        return ec.derive_private_key(int.from_bytes(b"\x22" * 48, "big"), ec.SECP384R1())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.from_private_bytes(b"\x33" * 32)
    if alg.startswith("HS"):
        return bytes(range(64))
    raise SystemExit(f"no fixture key for {alg}")


def main():
    for spec in json.loads(sys.argv[1]):
        alg = spec["alg"]
        print(jwt.encode(spec["claims"], key_for(alg), algorithm=alg, headers=spec.get("headers")))


if __name__ == "__main__":
    main()
