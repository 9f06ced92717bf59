"""Aggregate /tmp/study_cache results into markdown tables (printed; pasted into RESULTS.md)."""
import glob, json, os
import numpy as np, pandas as pd
from scipy.special import softmax
from evaluate import metrics
from classifiers import fit_temperature

d = pd.read_json("/tmp/study_cache/results.jsonl", lines=True)
d = d.drop_duplicates(["model", "ds", "N", "seed", "cand"], keep="last")
ORDER = ["lr_c1", "lr_c10", "lr_c100", "lr_c1000", "lr_c10_ts", "lr_c100_ts", "lr_c100_ts_noint",
         "lr_c1_ts5", "lr_c10_ts5", "lr_c100_ts5", "lr_c10_ts5_prior", "lr_c100_ts5_prior",
         "centroid_ts", "lrcv_nll", "cal_sig_c10", "cal_temp_c100", "lr_c10_globalT", "lr_c100_globalT"]


def posthoc_global_T():
    """'Constant' alternative: one global temperature per (model, C), chosen leave-one-dataset-out
    on *test* logits of the other datasets (both N) — an optimistic constant."""
    rows = []
    for f in glob.glob("/tmp/study_cache/logits_*.npz"):
        b = os.path.basename(f)[7:-4]
        model, rest = b.split("_", 1)
        ds, Ns, s = rest.rsplit("_", 2)
        z = np.load(f)
        rows.append(dict(model=model, ds=ds, N=int(Ns[1:]), seed=int(s[1:]), z=z))
    out = []
    grid = np.exp(np.linspace(np.log(0.1), np.log(10), 61))
    for model in {r["model"] for r in rows}:
        R = [r for r in rows if r["model"] == model]
        for c in ["lr_c10", "lr_c100"]:
            # mean NLL per (ds, T)
            nll = {}
            for r in R:
                y = r["z"]["y"]; L = r["z"][c].astype(float)
                for T in grid:
                    P = softmax(L / T, 1)
                    nll.setdefault(r["ds"], []).append((T, -np.log(np.clip(P[np.arange(len(y)), y], 1e-15, 1)).mean()))
            for r in R:
                others = [v for k, v in nll.items() if k != r["ds"]]
                tot = {}
                for lst in others:
                    for T, v in lst:
                        tot[T] = tot.get(T, 0) + v
                Tg = min(tot, key=tot.get)
                y = r["z"]["y"]; L = r["z"][c].astype(float)
                out.append(dict(model=model, ds=r["ds"], N=r["N"], seed=r["seed"], cand=c + "_globalT",
                                T=Tg, fit_s=np.nan, **metrics(softmax(L / Tg, 1), y)))
    return pd.DataFrame(out)


g = posthoc_global_T()
if len(g):
    d = pd.concat([d, g], ignore_index=True)


def md(df):
    """DataFrame -> markdown table (no tabulate dependency)."""
    df = df.reset_index()
    cols = [" ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in df.columns]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        out.append("| " + " | ".join("" if (isinstance(v, float) and np.isnan(v)) else
                                      (f"{v:.4g}" if isinstance(v, float) else str(v)) for v in r) + " |")
    return "\n".join(out)


def fmt(x, k):
    if k in ("acc", "f1"):
        return f"{100*x:.1f}"
    if k == "fit_ms":
        return f"{x:.0f}"
    return f"{x:.3f}"


def summary(model):
    s = d[d.model == model].copy(); s["fit_ms"] = 1000 * s.fit_s
    cols = ["acc", "f1", "ece", "nll", "conf", "fit_ms"]
    t = s.groupby(["cand", "N"])[cols].mean()
    lines = [f"| candidate | " + " | ".join(f"N=8 {c}" for c in cols) + " | " + " | ".join(f"N=64 {c}" for c in cols) + " |",
             "|---" * (1 + 2 * len(cols)) + "|"]
    for c in ORDER:
        if (c, 8) not in t.index:
            continue
        cells = [fmt(t.loc[(c, N), k], k) for N in (8, 64) for k in cols]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_dataset(model, metric_list=("acc", "f1", "ece", "nll"), cands=ORDER):
    s = d[d.model == model]
    dss = [x for x in ["cr", "sst2", "emotion", "ag_news", "trec", "banking77", "sms_spam"] if x in set(s.ds)]
    t = s.groupby(["ds", "N", "cand"])[list(metric_list)].mean()
    lines = ["| N | candidate | " + " | ".join(dss) + " |", "|---|---|" + "---|" * len(dss)]
    for N in (8, 64):
        for c in cands:
            if (dss[0], N, c) not in t.index:
                continue
            cells = [" / ".join(fmt(t.loc[(ds, N, c), k], k) for k in metric_list) for ds in dss]
            lines.append(f"| {N} | {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def temps(model):
    s = d[(d.model == model) & d["T"].notna() & d.cand.str.contains("_ts")]
    t = s.groupby(["cand", "N"])["T"].agg(median="median", min="min", max="max",
                                          at_bound=lambda x: int((x > 2900).sum()), runs="count")
    return md(t.round(3))


if __name__ == "__main__":
    for model in ["small", "large"]:
        if model not in set(d.model):
            continue
        print(f"\n## {model}: mean over datasets (acc/F1 in %, fit_ms = mean fit time of the actual eval calls)\n")
        print(summary(model))
        print(f"\n### {model}: per dataset, acc / macro-F1 / ECE / NLL (mean of 3 seeds)\n")
        print(per_dataset(model))
        print(f"\n### {model}: fitted temperatures\n")
        print(temps(model))
    if os.path.exists("seed_example.json"):
        se = pd.DataFrame(json.load(open("seed_example.json")))
        print("\n## seed example: predicted label, P(negative) for each input\n")
        lines = ["| candidate | small: broken on arrival | small: broke after 3 weeks | small T | large: broken on arrival | large: broke after 3 weeks | large T |",
                 "|---|---|---|---|---|---|---|"]
        for c in [c for c in ORDER if c in set(se.cand)]:
            cells = []
            for m in ["small", "large"]:
                r = se[(se.cand == c) & (se.model == m)]
                cells += [f"{x.pred} (P(neg)={x.p_negative:.2f})" for x in r.itertuples()]
                T = r["T"].iloc[0]
                cells.append("" if np.isnan(T) else f"{T:.3g}")
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
        print("\n".join(lines))
    if os.path.exists("fit_timing.json"):
        ft = pd.DataFrame(json.load(open("fit_timing.json")))
        ft["key"] = ft.ds + " n=" + ft.n.astype(str)
        print("\n## fit time per call (ms, median)\n")
        print(md(ft.pivot_table(index="cand", columns="key", values="fit_ms", sort=False).round(1)
              .reindex([c for c in ORDER if c in set(ft.cand)])))
