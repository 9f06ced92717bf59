#!/bin/bash
# Sequential driver (what was run, in order). Logs in /tmp/study_cache/*.log
set -e
cd /work/main/bench/study
. /work/main/.venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
NEW=lr_c1_ts5,lr_c10_ts5,lr_c10_ts5_prior,lr_c100_ts5_prior
if [ "$1" != "--second-half" ]; then
  python embed.py small large
  python evaluate.py small cr sst2 sms_spam ag_news trec emotion   # original 12 candidates
  python evaluate.py small banking77
fi
python evaluate.py small cr sst2 sms_spam ag_news trec emotion banking77 --cands $NEW
python evaluate.py large cr emotion ag_news
python seed_example.py
python fit_timing.py
