"""BG/NBD and Gamma-Gamma on CDNOW through the real CLI, against the published estimates.

Fader, Hardie & Lee (2005) fit BG/NBD to the 1/10th sample of the CDNOW cohort (2,357
customers, 39-week calibration ending 1997-09-30): r = 0.243, alpha = 4.414, a = 0.793,
b = 2.426, log-likelihood -9582.4. Fader & Hardie's note on the Gamma-Gamma model gives, for
the 946 of them with repeat purchases, p = 6.25, q = 3.74, v = 15.44. The test cuts that sample
out of ``CDNOW_master.txt`` (the full cohort: in the shared data directory beside the checkout,
else fetched from the ``lifetimes`` wheel on PyPI, where the shared copy was taken from) with
the sample's customer ids (``data/cdnow_sample_ids.txt``) and requires the CLI to print the
same figures to the published number of decimals.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from tests.support.cdnow import MISSING, cdnow

from segflow.ml.ltv import (
    BgNbdParams,
    GammaGammaParams,
    expected_purchases,
    expected_spend,
    p_alive,
)

SAMPLE_IDS = Path(__file__).with_name("data") / "cdnow_sample_ids.txt"
PUBLISHED_BG = BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
PUBLISHED_GG = GammaGammaParams(p=6.25, q=3.74, v=15.44)


CDNOW = cdnow()
needs_cdnow = pytest.mark.skipif(CDNOW is None, reason=MISSING)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 2,357-customer sample, in the master file's own format (header + whitespace rows)."""
    assert CDNOW is not None
    ids = {int(line) for line in SAMPLE_IDS.read_text().splitlines() if not line.startswith("#")}
    header, *rows = CDNOW.read_text().splitlines()
    kept = [row for row in rows if int(row.split()[0]) in ids]
    out = tmp_path_factory.mktemp("cdnow") / "CDNOW_sample.txt"
    out.write_text("\n".join([header, *kept]) + "\n")
    return out


def ltv_fit(path: Path, *extra: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "segflow.cli.main", "ltv", "fit", str(path), "--customer-col", "customer_id",
         "--date-col", "date", "--amount-col", "dollar_value", "--calibration-end", "1997-09-30", *extra],
        capture_output=True, text=True, check=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    return done.stdout


def holdout_purchase_days(path: Path) -> int:
    """Repeat purchases in weeks 40-78, counted independently: distinct purchase days per customer."""
    days: dict[str, set[str]] = defaultdict(set)
    for row in path.read_text().splitlines()[1:]:
        customer, date = row.split()[:2]
        if "19970930" < date <= "19980630":
            days[customer].add(date)
    return sum(len(d) for d in days.values())


def test_published_conditional_expectation() -> None:
    # FHL 2005, section 5: x=2, t_x=30.43, T=38.86 -> 1.226 purchases expected in the next 39 weeks.
    assert expected_purchases(PUBLISHED_BG, 39.0, [2], [30.43], [38.86])[0] == pytest.approx(
        1.226, abs=0.001
    )
    assert p_alive(PUBLISHED_BG, [0], [0.0], [38.86])[0] == 1.0
    # The mean of the Gamma-Gamma spend distribution: p v / (q - 1).
    assert expected_spend(PUBLISHED_GG, [0], [0.0])[0] == pytest.approx(35.22, abs=0.01)


@needs_cdnow
def test_cli_reproduces_the_published_cdnow_estimates(sample: Path) -> None:
    result = json.loads(ltv_fit(sample, "--json"))
    assert result["customers"] == {"calibration": 2_357, "repeat": 946}
    assert result["time_unit"] == "weeks"
    bg, gg = result["bgnbd"], result["gamma_gamma"]
    # the published figures, to the decimals they were published with
    assert {k: round(v, 3) for k, v in bg.items()} == vars(PUBLISHED_BG)
    assert {k: round(v, 2) for k, v in gg.items()} == vars(PUBLISHED_GG)
    assert result["log_likelihood"]["bgnbd"] == pytest.approx(-9582.4, abs=0.05)
    holdout = result["holdout"]
    assert holdout["length"] == 39.0
    assert holdout["actual_repeat_purchases"] == holdout_purchase_days(sample) == 1_882
    assert [row["x"] for row in holdout["by_calibration_frequency"]] == [
        *"0123456",
        "7+",
    ]
    assert sum(r["customers"] for r in holdout["by_calibration_frequency"]) == 2_357
    predicted = sum(
        r["customers"] * r["predicted_mean"] for r in holdout["by_calibration_frequency"]
    )
    assert predicted == pytest.approx(holdout["predicted_repeat_purchases"], rel=1e-3)


@needs_cdnow
def test_cli_prints_parameters_log_likelihood_and_holdout(sample: Path) -> None:
    text = ltv_fit(sample)
    printed = {k: float(v) for k, v in re.findall(r"\b(r|alpha|a|b|p|q|v) = ([\d.]+)", text)}
    assert {k: round(printed[k], 3) for k in ("r", "alpha", "a", "b")} == vars(PUBLISHED_BG)
    assert {k: round(printed[k], 2) for k in ("p", "q", "v")} == vars(PUBLISHED_GG)
    assert "BG/NBD (2,357 customers, time in weeks)" in text
    assert re.search(r"log-likelihood -9582\.4\d", text)
    assert "Holdout (39 weeks): predicted" in text and "actual 1,882" in text
    assert "7+" in text
