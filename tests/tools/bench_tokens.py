"""Writes bearer tokens for the jwt-auth benchmarks (envoy-config/bench/jwt-*.yaml), signed
with the fixture keys by PyJWT, valid for a day from now.

Usage: bench_tokens.py ALG COUNT OUT   e.g. bench_tokens.py RS256 5000 bench-results/rs256-many.txt
COUNT 1 gives one token (the cache-friendly case); a COUNT above the filter's cache (1024)
makes every request of a round-robin load miss the cache.
"""

import sys
import time

import jwt
from cryptography.hazmat.primitives import serialization

from pyjwt_sign import FIXTURES, key_for

# PS512 is the worst case: the 8192-bit fixture key (envoy-config/bench/jwt-auth-ps512-8192.yaml).
KIDS = {"RS256": "rsa-1", "ES256": "ec-p256", "PS512": "rsa-8192"}


def signing_key(alg):
    if alg == "PS512":
        pem = (FIXTURES / "rsa-8192.pem").read_bytes()
        return serialization.load_pem_private_key(pem, password=None)
    return key_for(alg)


def main():
    alg, count, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    now = int(time.time())
    key = signing_key(alg)
    with open(out, "w") as f:
        for i in range(count):
            claims = {
                "iss": "https://issuer.meshward.test",
                "aud": "api.meshward.test",
                "sub": f"bench-{i}",
                "iat": now,
                "exp": now + 86400,
                "jti": str(i),
            }
            f.write(jwt.encode(claims, key, algorithm=alg, headers={"kid": KIDS[alg]}) + "\n")


if __name__ == "__main__":
    main()
