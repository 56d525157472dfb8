"""A second evaluation corpus, built unlike the demo generator (issue 20).

    .venv/bin/python benchmarks/corpus2.py OUT [--speakers 48] [--snr 15] [--seed 7]

Where :func:`ipem.synth.generate_corpus` speaks a sentence grammar with MBROLA
diphone voices, adds white/pink/brown/babble/hum noise in NumPy and passes a
mu-law/A-law telephone channel, this corpus uses none of those parts:

* **voices**: espeak-ng's formant synthesiser (no MBROLA voice), one speaker per
  (accent, voice variant) pair -- accents ``en``, ``en-us``, ``en-gb-scotland``,
  ``en-gb-x-rp``, ``en-029``, ``en-gb-x-gbclan``, ``en-gb-x-gbcwmd``; variants
  ``m1``-``m7``, ``f1``-``f4``, ``klatt``-``klatt3`` -- each with its own pitch and
  speaking rate, jittered per utterance;
* **texts**: account numbers, dates, times and short requests of a call-centre
  vocabulary (none of the demo grammar's words lists); utterances are short
  (2-5 words, about 1-2 s), medium (8-12) or long (20-30 words);
* **channel**: a per-session band (sox ``sinc``, 150-400 Hz to 3000-3700 Hz) and level,
  then **noise** at the given SNR of the active speech -- brown noise made by sox
  (``synth brownnoise``) or a mains hum (50 or 60 Hz and harmonics, slow wobble)
  mixed with babble of two to four formant voices that are no speaker of the corpus
  (variants ``m8``, ``f5``, ``klatt4``, ``klatt5``) -- then a **low-bit-rate codec**:
  codec2 at 3200, 1600 or 1200 bit/s (``c2enc``/``c2dec``, Debian ``codec2``) or
  GSM full rate (sox ``-e gsm-full-rate``), drawn per utterance.

Every speaker has ``n_bg`` background utterances (UBM/T/back-end training) or, for
the first ``n_trial`` speakers, 2 enrolment and ``n_test`` test utterances.  Files:
``wav/<spk>/<spk>_{bg,enroll,test}_NN.wav`` (8 kHz 16-bit), ``bg.lst``,
``enroll.lst`` (``model utt utt``), ``trials.lst`` (every model against every test
utterance), ``meta.tsv``.  The clean speech is cached in ``OUT/../clean`` so that
corpora at other SNRs share it.  The output depends on ``seed`` and the counts only:
every sox call runs with ``-R`` (repeatable: without it sox's automatic dither, seeded
from the clock, changed 44 % of the samples of a conversion by up to 2 LSB from run to
run, and the EERs of ``generalise.py`` by up to two target trials).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

ACCENTS = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan",
           "en-gb-x-gbcwmd")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "klatt",
            "klatt2", "klatt3")
BABBLE_VARIANTS = ("m8", "f5", "klatt4", "klatt5")
CODECS = ("c2-3200", "c2-1600", "c2-1200", "gsm")
SR = 8000

_WORDS = {
    "digit": "zero one two three four five six seven eight nine".split(),
    "month": ("January February March April May June July August September October "
              "November December").split(),
    "day": "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split(),
    "item": ("invoice parcel refund subscription appointment delivery payment balance "
             "contract warranty voucher booking").split(),
    "verb": "cancel confirm change check renew transfer update postpone".split(),
    "who": "my wife my manager the landlord our neighbour the courier my brother".split(),
}
_PHRASES = (
    "account {digit} {digit} {digit} {digit}",
    "{verb} my {item}",
    "on {day} the {digit} of {month}",
    "I would like to {verb} the {item} that {who} ordered on {day}",
    "the reference is {digit} {digit} {digit} {digit} {digit} {digit}",
    "could you {verb} it before {day} please",
    "{who} says the {item} never arrived",
    "yes that is right",
    "no I said {month} not {month}",
    "please hold the line",
)


def _text(rng, length):
    lo, hi = {"short": (2, 5), "medium": (8, 12), "long": (20, 30)}[length]
    n, words = int(rng.integers(lo, hi + 1)), []
    while len(words) < n:
        phrase = _PHRASES[rng.integers(len(_PHRASES))]
        for tok in phrase.split():
            if tok.startswith("{"):
                tok = _WORDS[tok[1:-1]][rng.integers(len(_WORDS[tok[1:-1]]))]
            words.extend(tok.split())
    return " ".join(words[:n])


def speakers(n, seed):
    """``n`` (name, voice, pitch, rate) speakers: distinct accent+variant pairs."""
    rng = np.random.default_rng(seed)
    pairs = [(a, v) for a in ACCENTS for v in VARIANTS]
    if n > len(pairs):
        raise ValueError(f"at most {len(pairs)} speakers")
    pick = rng.permutation(len(pairs))[:n]
    out = []
    for i, j in enumerate(pick):
        a, v = pairs[j]
        out.append((f"s{i:02d}", f"{a}+{v}", int(rng.integers(25, 75)),
                    int(rng.integers(130, 200))))
    return out


def _run(cmd, **kw):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)


def _espeak(voice, text, pitch, rate, path):
    """Speech at 8 kHz as float64 (espeak-ng -> sox rate)."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "e.wav"
        _run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(rate), "-w", str(raw),
              text])
        _run(["sox", "-R", str(raw), "-r", str(SR), "-c", "1", "-b", "16", str(path)])
    return sf.read(str(path), dtype="float64")[0]


def _active_power(x):
    n = len(x) // 80
    e = (x[:n * 80].reshape(n, 80) ** 2).mean(axis=1)
    keep = e > e.max() * 1e-3
    return float(e[keep].mean())


def _brown(n, seed, tmp):
    path = Path(tmp) / "brown.wav"
    _run(["sox", "-R", "-n", "-r", str(SR), "-c", "1", "-b", "16", str(path), "synth",
          f"{n / SR + 0.1:.3f}", "brownnoise", "vol", "0.5"])
    y = sf.read(str(path), dtype="float64")[0][:n]
    return y - y.mean()


def _hum_babble(n, rng, babble):
    t = np.arange(n) / SR
    f0 = 50.0 if rng.random() < 0.5 else 60.0
    hum = sum(rng.uniform(0.3, 1.0) / h * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6.3))
              for h in (1, 2, 3, 5, 7))
    hum *= 1.0 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t)
    talk = np.zeros(n)
    for _ in range(int(rng.integers(2, 5))):
        src = babble[rng.integers(len(babble))]
        start = int(rng.integers(0, max(1, len(src) - n)))
        seg = np.resize(src[start:start + n], n)
        talk += seg / np.sqrt(_active_power(seg) + 1e-12)
    hum /= np.sqrt(np.mean(hum ** 2))
    talk /= np.sqrt(np.mean(talk ** 2) + 1e-12)
    return hum + rng.uniform(0.7, 1.5) * talk


def _codec(x, codec, tmp):
    tmp = Path(tmp)
    pcm = np.clip(np.round(x * 32767), -32768, 32767).astype("<i2")
    if codec == "gsm":
        src = tmp / "in.wav"
        sf.write(str(src), pcm, SR, subtype="PCM_16")
        _run(["sox", "-R", str(src), "-r", str(SR), "-c", "1", "-e", "gsm-full-rate",
              str(tmp / "c.gsm")])
        _run(["sox", "-R", str(tmp / "c.gsm"), "-e", "signed", "-b", "16", str(tmp / "out.wav")])
        y = sf.read(str(tmp / "out.wav"), dtype="float64")[0]
    else:
        mode = codec.split("-")[1]
        pcm.tofile(tmp / "in.raw")
        _run(["c2enc", mode, str(tmp / "in.raw"), str(tmp / "c.bit")])
        _run(["c2dec", mode, str(tmp / "c.bit"), str(tmp / "out.raw")])
        y = np.fromfile(tmp / "out.raw", dtype="<i2").astype(np.float64) / 32768.0
    return y


def _plan(spk, n_trial, n_bg, n_test, seed):
    rng = np.random.default_rng([seed, 1])
    plan = []
    for i, (name, voice, pitch, rate) in enumerate(spk):
        roles = ([("enroll", 2), ("test", n_test)] if i < n_trial else [("bg", n_bg)])
        for role, count in roles:
            for k in range(count):
                length = ("long" if role == "enroll" else
                          ("short", "medium", "long")[rng.integers(3)])
                plan.append(dict(
                    spk=name, utt=f"{name}_{role}_{k:02d}", voice=voice,
                    pitch=int(np.clip(pitch + rng.integers(-6, 7), 0, 99)),
                    rate=int(rate + rng.integers(-15, 16)), text=_text(rng, length),
                    length=length, low=int(rng.integers(150, 401)),
                    high=int(rng.integers(3000, 3701)), gain_db=float(rng.uniform(-12, -3)),
                    noise=("brown", "hum+babble")[rng.integers(2)],
                    codec=CODECS[rng.integers(len(CODECS))], seed=int(rng.integers(2**31))))
    return plan


def generate(out, *, n_speakers=48, n_trial=16, n_bg=8, n_test=4, snr_db=15.0, seed=7,
             n_jobs=2):
    """Write the corpus into ``out`` (see the module docstring); returns ``out``."""
    missing = [t for t in ("espeak-ng", "sox", "c2enc", "c2dec") if shutil.which(t) is None]
    if missing:
        raise SystemExit(f"corpus2: {', '.join(missing)} not found: install the Debian packages "
                         "espeak-ng, sox and codec2")
    out = Path(out)
    clean_dir = out.parent / f"clean-{seed}"
    spk = speakers(n_speakers, seed)
    plan = _plan(spk, n_trial, n_bg, n_test, seed)
    babble_voices = [f"{a}+{v}" for a in ("en-us", "en") for v in BABBLE_VARIANTS]
    bab_rng = np.random.default_rng([seed, 2])
    clean_dir.mkdir(parents=True, exist_ok=True)
    babble = []
    for j, v in enumerate(babble_voices):
        path = clean_dir / f"babble_{j}.wav"
        text = _text(bab_rng, "long") + " " + _text(bab_rng, "long")
        babble.append(sf.read(str(path))[0] if path.exists() else
                      _espeak(v, text, int(bab_rng.integers(30, 70)), 170, path))

    def work(u):
        wav = out / "wav" / u["spk"] / f"{u['utt']}.wav"
        if wav.exists():
            return
        rng = np.random.default_rng(u["seed"])
        with tempfile.TemporaryDirectory() as tmp:
            cpath = clean_dir / f"{u['utt']}.wav"
            if cpath.exists():
                x = sf.read(str(cpath), dtype="float64")[0]
            else:
                x = _espeak(u["voice"], u["text"], u["pitch"], u["rate"], cpath)
            src = Path(tmp) / "x.wav"
            sf.write(str(src), x, SR, subtype="FLOAT")
            _run(["sox", "-R", str(src), str(Path(tmp) / "b.wav"), "sinc",
                  f"{u['low']}-{u['high']}", "pad", "0.3", "0.3"])
            x = sf.read(str(Path(tmp) / "b.wav"), dtype="float64")[0]
            x *= 10 ** (u["gain_db"] / 20) / (np.abs(x).max() + 1e-12)
            n = len(x)
            noise = _brown(n, u["seed"], tmp) if u["noise"] == "brown" else \
                _hum_babble(n, rng, babble)
            scale = np.sqrt(_active_power(x) / (np.mean(noise ** 2) * 10 ** (snr_db / 10)))
            y = x + scale * noise
            y *= min(1.0, 0.95 / np.abs(y).max())
            y = _codec(y, u["codec"], tmp)
        wav.parent.mkdir(parents=True, exist_ok=True)
        part = wav.with_suffix(".part.wav")
        sf.write(str(part), y, SR, subtype="PCM_16")
        part.replace(wav)

    with ThreadPoolExecutor(n_jobs) as pool:
        list(pool.map(work, plan))
    rel = {u["utt"]: f"wav/{u['spk']}/{u['utt']}.wav" for u in plan}
    trial_spk = [s[0] for s in spk[:n_trial]]
    enroll = {s: [rel[u["utt"]] for u in plan if u["spk"] == s and "_enroll_" in u["utt"]]
              for s in trial_spk}
    tests = [(u["spk"], rel[u["utt"]]) for u in plan if "_test_" in u["utt"]]
    (out / "enroll.lst").write_text("".join(f"{m} {' '.join(us)}\n" for m, us in enroll.items()))
    (out / "trials.lst").write_text("".join(
        f"{m} {t} {'target' if m == s else 'nontarget'}\n" for m in trial_spk for s, t in tests))
    (out / "bg.lst").write_text("".join(f"{rel[u['utt']]}\n" for u in plan if "_bg_" in u["utt"]))
    cols = ("utt", "voice", "pitch", "rate", "length", "low", "high", "noise", "codec", "text")
    (out / "meta.tsv").write_text("\t".join(cols) + "\n" + "".join(
        "\t".join(str(u[c]) for c in cols) + "\n" for u in plan))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out")
    p.add_argument("--speakers", type=int, default=48)
    p.add_argument("--trial-speakers", type=int, default=16)
    p.add_argument("--bg", type=int, default=8)
    p.add_argument("--snr", type=float, default=15.0)
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args(argv)
    generate(a.out, n_speakers=a.speakers, n_trial=a.trial_speakers, n_bg=a.bg, snr_db=a.snr,
             seed=a.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
