"""ParameterError: messages that know their parameter, across pickling and shards."""
import pickle

import numpy as np
import pytest

import ipem
from ipem.parallel import EngineParameterError
from ipem.validation import ParameterError, check_int, check_option, validate_sample_weight


def test_parameter_error_renders_with_other_names_and_hints():
    e = ParameterError("checkpoint c was written with {name}=0, this training has {name}=3: "
                       "{hint}, or use the same data", "random_state",
                       hint="delete it (or pass resume=False)")
    assert isinstance(e, ValueError)
    assert str(e) == ("checkpoint c was written with random_state=0, this training has "
                      "random_state=3: delete it (or pass resume=False), or use the same data")
    assert e.render("--seed", "delete it") == ("checkpoint c was written with --seed 0, this "
                                               "training has --seed 3: delete it, or use the "
                                               "same data")
    tail = ParameterError("{name} must be > 0; ", "tol", hint="or pass x=1")
    assert str(tail) == "tol must be > 0; or pass x=1"
    assert tail.render("--tol", "") == "--tol must be > 0; "
    several = ParameterError("{name:final_iter}=5 (was 2), {name:tol}=0.1 (was 1)",
                             ("final_iter", "tol"))
    assert several.parameter == "final_iter" and several.parameters == ("final_iter", "tol")
    assert several.render({"tol": "--tol"}) == "final_iter=5 (was 2), --tol 0.1 (was 1)"
    # braces in paths and values are text, not placeholders
    assert str(ParameterError("{x} {name} must be set {0}", "a")) == "{x} a must be set {0}"


def test_parameter_error_survives_pickling():
    e = ParameterError("{name} must be {hint} here", "top_c", hint="small")
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is ParameterError
    assert (str(back), back.parameter, back.hint, back.template) == \
        (str(e), "top_c", "small", e.template)
    assert back.render("--top-c", "tiny") == "--top-c must be tiny here"


def test_checks_raise_parameter_errors():
    with pytest.raises(ParameterError, match="^n_components must be an integer >= 1") as info:
        check_int(0, "n_components")
    assert info.value.parameter == "n_components"
    assert info.value.render("-K").startswith("-K must be an integer >= 1, got 0")
    with pytest.raises(ParameterError, match="^init='x': expected one of") as info:
        check_option("x", "init", ("split", "kmeans"))
    assert info.value.render("--init").startswith("--init 'x': expected one of")
    with pytest.raises(ParameterError, match="sample_weight must be non-negative"):
        validate_sample_weight([1.0, -1.0], 2)
    with pytest.raises(ParameterError, match="^tol must be a finite number") as info:
        ipem.UBMTrainer(2, tol=-1.0).fit(np.random.default_rng(0).normal(size=(50, 2)))
    assert info.value.parameter == "tol"


def _bad_top_c(shard):
    raise ParameterError("{name} must be None or an integer >= 1, got -1", "top_c",
                         hint=" (or pass None)")


def test_parameter_errors_on_shards_keep_their_parameter():
    ctrl = ipem.LocalController(2, block_size=None)  # two shards of 5 rows, both fail
    data = ctrl.distribute(np.zeros((10, 2)))
    try:
        with pytest.raises(EngineParameterError) as info:
            ctrl.reduce(_bad_top_c, data)
    finally:
        data.free()
    e = info.value
    assert isinstance(e, ipem.EngineValueError) and isinstance(e, ParameterError)
    assert str(e) == ("shard 0: ValueError: top_c must be None or an integer >= 1, got -1 "
                      "(or pass None); shard 1: ValueError: top_c must be None or an integer "
                      ">= 1, got -1 (or pass None)")
    assert e.parameters == ("top_c",) and len(e.failures) == 2
    assert e.render("--top-c", "").startswith("shard 0: ValueError: --top-c must be None")
    back = pickle.loads(pickle.dumps(e))
    assert str(back) == str(e) and len(back.failures) == 2
