"""``ipem extract``: MFCC+deltas, VAD and CMVN features from audio (:func:`ipem.steps.extract`)."""
from __future__ import annotations

from ..io.formats import names as format_names
from ..speaker import FEATURE_NORMALIZATIONS, VAD_METHODS
from ..steps import extract
from .options import INPUT_DIR, INPUT_FILE, OUTPUT_DIR, Command, UsageError, common_options, typed


def options(sp):
    """Declare the options of ``ipem extract`` on its sub-parser."""
    sp.add_argument("--root", default=None, type=INPUT_DIR,
                    help="corpus directory holding the audio; this or --data-dir")
    sp.add_argument("--data-dir", default=None, type=INPUT_DIR,
                    help="Kaldi data directory whose wav.scp names the audio; --out-dir "
                         "becomes a data directory (feats.scp, Kaldi archives, utt2spk and "
                         "spk2utt copied)")
    sp.add_argument("--out-dir", required=True, type=OUTPUT_DIR,
                    help="feature directory; files mirror the audio paths under --root")
    sp.add_argument("--list", action="append", type=INPUT_FILE,
                    help="only the audio named in these lists")
    # every registered format: kaldi as archives (feats.<n>.ark, feats.scp), the others file by
    # file (ipem.io.formats.write_names())
    sp.add_argument("--format", default=None, choices=list(format_names()),
                    help="feature file format (default: kaldi with --data-dir, htk otherwise); "
                         "kaldi writes feats.<n>.ark and feats.scp")
    sp.add_argument("--sample-rate", type=typed(int, 1), default=8000,
                    help="audio is resampled to this rate (Hz)")
    sp.add_argument("--vad", default="gmm", choices=[*VAD_METHODS, "none"],
                    help="voice activity detection: a 3-Gaussian mixture on frame log-energy "
                         "(adapts to the noise level), Kaldi's compute-vad rule, the earlier "
                         "percentile rule, or none (default: gmm)")
    sp.add_argument("--norm", default="cmvn", choices=list(FEATURE_NORMALIZATIONS),
                    help="feature normalisation of the speech frames: per utterance, over a "
                         "sliding window, or feature warping (default: cmvn)")
    sp.add_argument("--norm-window", type=typed(int, 2), default=300,
                    help="window of the sliding normalisations and of warping, in frames "
                         "(default: 300 = 3 s)")
    sp.add_argument("--rasta", action="store_true",
                    help="RASTA-filter the static cepstra")
    sp.add_argument("--low-freq", type=typed(float, 0.0), default=None,
                    help="low edge of the mel filterbank in Hz (default: 300 at 8 kHz, "
                         "0 above)")
    sp.add_argument("--high-freq", type=typed(float, 0.0, strict=True), default=None,
                    help="high edge of the mel filterbank in Hz (default: 3400 at 8 kHz, "
                         "Nyquist above)")
    common_options(sp)


def run(args):
    """Run ``ipem extract`` once its paths are checked; returns the exit status."""
    if (args.root is None) == (args.data_dir is None):
        raise UsageError("give --root (a corpus directory) or --data-dir (a Kaldi data "
                         "directory), one of them")
    refs = extract(args.root, args.out_dir, lists=args.list, fmt=args.format,
                   sample_rate=args.sample_rate, controller=args.cluster,
                   progress=not args.quiet, allow_pipes=args.allow_pipes,
                   data_dir=args.data_dir, vad=False if args.vad == "none" else args.vad,
                   norm=args.norm, norm_window=args.norm_window, rasta=args.rasta,
                   low_freq=args.low_freq, high_freq=args.high_freq)
    print(f"extracted {len(refs)} files, {sum(r.n_frames for r in refs)} speech frames "
          f"-> {args.out_dir}")
    return 0


EXTRACT = Command("extract", options, run, help="MFCC+deltas, VAD, CMVN features from audio",
                  description="Extract features from the audio under --root.")
