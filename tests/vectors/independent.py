#!/usr/bin/env python3
"""An independent implementation of umbra's handshake, descriptor signature
and onion layers, written from docs/protocol.md with the `cryptography`
package. It prints the values pinned in tests/handshake.rs; the two agreeing
is evidence that the spec and the Rust code say the same thing.

    pip install cryptography && python3 tests/vectors/independent.py
"""
import hashlib
import hmac

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw

PROTOID = b"umbra-ntor-x25519-sha256-1"


def x_pub(secret):
    return X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes(*RAW)


def dh(secret, public):
    return X25519PrivateKey.from_private_bytes(secret).exchange(X25519PublicKey.from_public_bytes(public))


def hkdf(ikm, info, n):
    return HKDF(algorithm=hashes.SHA256(), length=n, salt=PROTOID, info=info).derive(ikm)


# Handshake, with the secrets the Rust test scripts.
sign_seed, b, x, y = b"\x11" * 32, b"\x22" * 32, b"\x33" * 32, b"\x44" * 32
ident = Ed25519PrivateKey.from_private_bytes(sign_seed)
ident_pub = ident.public_key().public_bytes(*RAW)
ID = hashlib.sha256(ident_pub).digest()
B, X, Y = x_pub(b), x_pub(x), x_pub(y)
secret = dh(x, Y) + dh(x, B) + ID + B + X + Y + PROTOID
assert secret == dh(y, X) + dh(b, X) + ID + B + X + Y + PROTOID
verify = hkdf(secret, b"umbra-ntor-1:verify", 32)
keys = hkdf(secret, b"umbra-ntor-1:layer-keys", 96)
auth = hmac.new(verify, ID + B + Y + X + PROTOID + b"server", hashlib.sha256).digest()
print("VECTOR_ID", ID.hex())
print("VECTOR_CLIENT_MSG", (ID + B + X).hex())
print("VECTOR_REPLY", (Y + auth).hex())
print("VECTOR_KEYS", keys.hex())

# Descriptor: context, then identity | onion key | published | flags |
# address list (count, then family 4, IPv4, port), signed by the identity.
signed = ident_pub + B + (1_700_000_000).to_bytes(8, "big") + b"\x01" + b"\x01\x04" + bytes([127, 0, 0, 1]) + (4000).to_bytes(2, "big")
print("VECTOR_SIGNATURE", ident.sign(b"umbra descriptor v1\x00" + signed).hex())

# Onion layers.
CELL_LEN, HEADER, TAG, MAX_HOPS = 4096, 5, 16, 8
ONION = CELL_LEN - HEADER
PLAIN = ONION - TAG
PAYLOAD = ONION - TAG * MAX_HOPS


def nonce(ctr):
    return b"\0" * 4 + ctr.to_bytes(8, "big")


def stream(key, ctr, start, n):
    """ChaCha20 keystream bytes start..start+n under (key, nonce(ctr)), block counter 0."""
    enc = Cipher(algorithms.ChaCha20(key, b"\0" * 4 + nonce(ctr)), mode=None).encryptor()
    return enc.update(b"\0" * (start + n))[start:]


def aead_ks(key, ctr, start, n):
    # Plaintext keystream starts at block 1 (RFC 8439 section 2.8).
    return stream(key, ctr, 64 + start, n)


def xor(a, b):
    return bytes(p ^ q for p, q in zip(a, b))


def seal(key, ctr, plain, ad):
    out = ChaCha20Poly1305(key).encrypt(nonce(ctr), plain, ad)
    return out[-TAG:] + out[:-TAG]  # tag first


def open_(key, ctr, onion, ad):
    return ChaCha20Poly1305(key).decrypt(nonce(ctr), onion[TAG:] + onion[:TAG], ad)


hop_keys = [bytes((i * 31 + j) % 256 for j in range(96)) for i in (1, 2, 3)]
fwd = [k[:32] for k in hop_keys]
bwd = [k[32:64] for k in hop_keys]
pad = [k[64:] for k in hop_keys]
payload = b"\x5a" * PAYLOAD
n, ctr = 3, 0

# Client, forward: fillers, then seal outward in.
filler = b""
for j in range(n - 1):
    filler = xor(filler, aead_ks(fwd[j], ctr, PLAIN - len(filler), len(filler))) + stream(pad[j], ctr, 0, TAG)
plain = payload + b"\x99" * (PLAIN - PAYLOAD - len(filler)) + xor(filler, aead_ks(fwd[n - 1], ctr, PLAIN - len(filler), len(filler)))
onion = seal(fwd[n - 1], ctr, plain, b"")
for j in reversed(range(n - 1)):
    assert onion[PLAIN:] == stream(pad[j], ctr, 0, TAG)
    onion = seal(fwd[j], ctr, onion[:PLAIN], b"")
print("VECTOR_FORWARD_SHA256", hashlib.sha256(onion).hexdigest())
# Relays, forward: open, then append the padding.
for j in range(n):
    onion = open_(fwd[j], ctr, onion, b"") + stream(pad[j], ctr, 0, TAG)
assert onion[:PAYLOAD] == payload

# Relays, backward: the exit seals payload and zeros, each relay seals all
# but the last 16 bytes with those 16 as associated data.
onion = payload + b"\0" * (ONION - PAYLOAD)
for j in reversed(range(n)):
    onion = seal(bwd[j], ctr, onion[:PLAIN], onion[PLAIN:])
print("VECTOR_BACKWARD_SHA256", hashlib.sha256(onion).hexdigest())
