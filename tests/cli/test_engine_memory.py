"""``ipem train-ivector --engine-memory``: the statistics streamed, the same extractor."""
from numpy.testing import assert_array_equal

import ipem
from ipem.cli import main
from ipem.ivector import TotalVariability
from tests.helpers import feature_world

D = 4


def test_train_ivector_engine_memory(tmp_path, capsys):
    corpus, feats = feature_world(tmp_path, [f"spk{i}" for i in range(3)], dim=D, seed=0)
    paths = sorted(str(p) for p in feats.rglob("*.htk"))
    ubm = tmp_path / "ubm.npz"
    ipem.UBMTrainer(2, stage_iter=1, final_iter=2, random_state=0).fit(paths).save(ubm)
    common = ["train-ivector", "--ubm", str(ubm), "--list", str(corpus / "ubm.lst"), "-R", "2",
              "--iter", "2", "--features", str(feats), "--root", str(corpus), "--quiet"]
    tv = {}
    # 12 utterances: one block of 64 rows of 2 + 2 * 4 float64 (5,120 bytes); 5K holds it,
    # computed from the scratch file every iteration, the in-memory run holds it too
    for name, extra in (("memory", ["--cluster", "local:1"]),
                        ("streamed", ["--cluster", "local:2", "--engine-memory", "5K"])):
        tv[name] = tmp_path / f"{name}.npz"
        assert main(common + extra + ["--out", str(tv[name])]) == 0, capsys.readouterr().err
    assert_array_equal(TotalVariability.load(tv["streamed"]).T_,
                       TotalVariability.load(tv["memory"]).T_)
    capsys.readouterr()
    assert main(common + ["--engine-memory", "4K", "--out", str(tmp_path / "x.npz")]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--engine-memory 4096 holds less than one block" in err, err
    assert not (tmp_path / "x.npz").exists()
