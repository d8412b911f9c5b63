"""Benchmark: simulator throughput (target: 100 000 AIF pairs in under a minute).

Run: ``python Testing/benchmarks/simulation_speed.py [--pairs N]``.
Prints the wall time of the paired-AIF simulator and of one phantom.
"""

import argparse
import time

from AIAIFLib.simulation import simulate_aif_pairs, simulate_phantom


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=100000)
    args = parser.parse_args()
    start = time.perf_counter()
    pairs = simulate_aif_pairs(args.pairs, n_frames=70, seed=1)
    pairs_s = time.perf_counter() - start
    start = time.perf_counter()
    phantom = simulate_phantom(seed=1)
    phantom_s = time.perf_counter() - start
    print("AIF pairs: {} x {} frames in {:.1f} s ({:.0f} pairs/s; target: 100000 in < 60 s)".format(
        len(pairs), pairs.times_s.shape[1], pairs_s, len(pairs) / pairs_s))
    print("Phantom: {} frames x 3 slices x {}x{} in {:.2f} s".format(*phantom.frames.shape[:1],
                                                                   *phantom.frames.shape[2:], phantom_s))


if __name__ == "__main__":
    main()
