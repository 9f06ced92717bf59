"""The benchmark suite: accuracy, calibration, latency, throughput, training time, memory, HTTP.

Run ``python -m bench [--quick]``; it writes docs/BENCHMARKS.md and bench/results.json.
The harness only: bench/http_load.py is the load client the HTTP section starts, bench/spark_bench.py
the Spark scale-out measurement (docs/SCALE.md). The one-off studies the defaults came from are
summarised, with the commit that holds their scripts, in docs/CLASSIFIER_STUDY.md.
"""
