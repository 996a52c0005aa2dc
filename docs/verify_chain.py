"""Check Diandian's certificate chain offline: every hash recomputed, every link followed.

    curl -s https://<host>/api/v1/certificates/chain.jsonl > chain.jsonl
    pip install rfc8785 && python verify_chain.py chain.jsonl

Each line is {"seq", "record", "hash"}: record is the RFC 8785 canonical JSON that hash
(SHA-256, hex) covers; record["prev"] is the previous line's hash (64 zeros for the first).
"""
import hashlib
import json
import sys

import rfc8785

prev, count = "0" * 64, 0
with open(sys.argv[1], encoding="utf-8") as lines:
    for count, line in enumerate(lines, start=1):
        entry = json.loads(line)
        record = json.loads(entry["record"])
        where = f"line {count} ({record.get('kind')} {record.get('number')})"
        if entry["seq"] != count:
            sys.exit(f"{where}: seq {entry['seq']}, expected {count}: an entry is missing or out of order")
        if hashlib.sha256(rfc8785.dumps(record)).hexdigest() != entry["hash"]:
            sys.exit(f"{where}: the record does not hash to its hash: it was changed")
        if record.get("prev") != prev:
            sys.exit(f"{where}: does not link to the line before: the chain was cut or rewritten")
        prev = entry["hash"]
print(f"{count} entries, every hash and link checks out; head {prev}")
