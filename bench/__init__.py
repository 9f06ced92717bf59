"""The benchmark suite: accuracy, calibration, latency, throughput, training time, memory, HTTP.

Run ``python -m bench [--quick]``; it writes docs/BENCHMARKS.md and bench/results.json.
bench/study/ holds the classifier study the defaults came from; bench/http_load.py and
bench/bulk_study.py are stand-alone scripts the suite calls or sits next to.
"""
