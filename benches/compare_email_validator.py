#!/usr/bin/env python3
"""Syntax-check throughput of python email-validator on the email column of a CSV, for the
comparison in benches/RESULTS.md. Usage: compare_email_validator.py LIST.csv [column]"""
import csv
import sys
import time

from email_validator import EmailNotValidError, validate_email


def main() -> None:
    path = sys.argv[1]
    column = sys.argv[2] if len(sys.argv) > 2 else "email"
    with open(path, newline="", encoding="utf-8") as f:
        addresses = [row[column] for row in csv.DictReader(f)]
    valid = 0
    start = time.perf_counter()
    for a in addresses:
        try:
            validate_email(a, check_deliverability=False)
            valid += 1
        except EmailNotValidError:
            pass
    elapsed = time.perf_counter() - start
    print(f"email-validator: {len(addresses)} addresses in {elapsed:.2f} s "
          f"= {len(addresses) / elapsed:,.0f} addresses/s ({valid} valid), one core, "
          f"CSV reading excluded")


if __name__ == "__main__":
    main()
