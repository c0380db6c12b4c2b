"""BG/NBD and Gamma-Gamma on CDNOW (Fader, Hardie & Lee 2005) through the real CLI.

The published estimates (r=0.243, alpha=4.414, a=0.793, b=2.426; p=6.25, q=3.74, v=15.44)
were fitted on the 1/10th systematic sample (2,357 customers). ``../shared/data/cdnow`` holds
the full cohort of 23,570 customers, of which that sample is a tenth, so the test requires the
full-cohort estimates to agree with the published ones within the sampling error of a tenth
(a few standard errors), and checks the implementation itself against published quantities
computed from the published parameters.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from segflow.ml.ltv import (
    BgNbdParams,
    GammaGammaParams,
    expected_purchases,
    expected_spend,
    p_alive,
)

CDNOW = Path(__file__).resolve().parents[4] / "shared" / "data" / "cdnow" / "CDNOW_master.txt"
PUBLISHED_BG = BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
PUBLISHED_GG = GammaGammaParams(p=6.25, q=3.74, v=15.44)


def test_published_conditional_expectation() -> None:
    # FHL 2005, section 5: x=2, t_x=30.43, T=38.86 -> 1.226 purchases expected in the next 39 weeks.
    assert expected_purchases(PUBLISHED_BG, 39.0, [2], [30.43], [38.86])[0] == pytest.approx(
        1.226, abs=0.001
    )
    assert p_alive(PUBLISHED_BG, [0], [0.0], [38.86])[0] == 1.0
    # FHL 2005 (RFM and CLV), the mean of the Gamma-Gamma spend distribution: p v / (q - 1).
    assert expected_spend(PUBLISHED_GG, [0], [0.0])[0] == pytest.approx(35.22, abs=0.01)


@pytest.mark.skipif(not CDNOW.is_file(), reason="CDNOW data not present")
def test_cli_reproduces_published_cdnow_estimates() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "segflow.cli.main", "ltv", "fit", str(CDNOW), "--customer-col", "customer_id",
         "--date-col", "date", "--amount-col", "dollar_value", "--calibration-end", "1997-09-30", "--json"],
        capture_output=True, text=True, check=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    result = json.loads(out.stdout)
    bg, gg = result["bgnbd"], result["gamma_gamma"]
    assert result["customers"]["calibration"] == 23_570
    assert bg["r"] == pytest.approx(PUBLISHED_BG.r, rel=0.10)
    assert bg["alpha"] == pytest.approx(PUBLISHED_BG.alpha, rel=0.12)
    assert bg["a"] == pytest.approx(PUBLISHED_BG.a, rel=0.12)
    assert bg["b"] == pytest.approx(PUBLISHED_BG.b, rel=0.15)
    assert gg["p"] == pytest.approx(PUBLISHED_GG.p, rel=0.05)
    assert gg["q"] == pytest.approx(PUBLISHED_GG.q, rel=0.05)
    assert gg["v"] == pytest.approx(PUBLISHED_GG.v, rel=0.05)
    holdout = result["holdout"]
    assert holdout["length"] == pytest.approx(39.0)
    assert holdout["actual_repeat_purchases"] > 0
    # the holdout comparison is reported per calibration frequency, 0..6 and 7+
    assert [row["x"] for row in holdout["by_calibration_frequency"]] == [
        "0",
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
        "7+",
    ]
