"""Check Diandian's certificate chain offline: every hash recomputed, every link followed.

    curl -s https://<host>/api/v1/certificates/chain.jsonl > chain.jsonl
    pip install rfc8785 && python verify_chain.py chain.jsonl [NUMBER NAME SALT]

Each line is {"seq", "record", "hash"}: record is the RFC 8785 canonical JSON that hash
(SHA-256, hex) covers; record["prev"] is the previous line's hash (64 zeros for the first).
A record holds no name, only beneficiary_sha256 = sha256(salt bytes + UTF-8 name); with the name
and salt that GET /api/v1/certificates/NUMBER shows, the last arguments check that commitment too,
and that certificate is reported revoked (exit status 1) if a later line revokes it, or missing.
"""
import hashlib
import json
import sys

import rfc8785

prev, count, named, found, revoked = "0" * 64, 0, sys.argv[2:5], False, None
with open(sys.argv[1], encoding="utf-8") as lines:
    for count, line in enumerate(lines, start=1):
        entry = json.loads(line)
        try:
            record = json.loads(entry["record"])
        except ValueError:
            sys.exit(f"line {count}: the record is not JSON: it was changed")
        where = f"line {count} ({record.get('kind')} {record.get('number')})"
        if entry["seq"] != count:
            sys.exit(f"{where}: seq {entry['seq']}, expected {count}: an entry is missing or out of order")
        if hashlib.sha256(rfc8785.dumps(record)).hexdigest() != entry["hash"]:
            sys.exit(f"{where}: the record does not hash to its hash: it was changed")
        if record.get("prev") != prev:
            sys.exit(f"{where}: does not link to the line before: the chain was cut or rewritten")
        if named and record.get("kind") == "issue" and record.get("number") == named[0]:
            if hashlib.sha256(bytes.fromhex(named[2]) + named[1].encode()).hexdigest() != record["beneficiary_sha256"]:
                sys.exit(f"{where}: {named[1]!r} with that salt is not the name this certificate was issued to")
            print(f"{named[0]} was issued to {named[1]}")
            found = True
        if named and record.get("kind") == "revoke" and record.get("number") == named[0]:
            revoked = record
        prev = entry["hash"]
print(f"{count} entries, every hash and link checks out; head {prev}")
if named and not found:
    sys.exit(f"{named[0]} is not in this export: no such certificate was issued (or the export is older)")
if revoked:
    sys.exit(f"{named[0]} was revoked {revoked.get('revoked_at')}: {revoked.get('reason')}")
