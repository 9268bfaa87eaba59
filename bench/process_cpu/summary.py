"""The lines bench/process_cpu/sitecustomize.py wrote: CPU seconds by test file (the
processes a test started count for its file; pytest's workers on a line of their own)."""

import collections
import glob
import os
import sys


def main(folder):
    by_file, count = collections.Counter(), collections.Counter()
    for path in glob.glob(os.path.join(folder, "*.tsv")):
        with open(path) as f:
            cpu, _, worker, test = f.readline().split("\t", 4)[:4]
        where = test.split("::")[0] or (f"(pytest worker {worker})" if worker
                                        else "(outside a test)")
        by_file[where] += float(cpu)
        count[where] += 1
    print(f"{sum(count.values())} processes, {sum(by_file.values()):.0f} s CPU")
    for where, cpu in by_file.most_common():
        print(f"{cpu:8.1f} s  {count[where]:3d}  {where}")


if __name__ == "__main__":
    main(sys.argv[1])
