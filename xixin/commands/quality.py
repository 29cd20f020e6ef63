"""`xixin quality SPEECH.wav --loss 10 --jitter 20 [--bitrate 16] [--protect auto|off|fec|red]`.

Runs real speech through the whole voice pipeline (encode -> impaired network -> jitter buffer ->
decode, codec.quality) and prints PESQ-WB, STOI, expand rate, late rate and the delay the jitter
buffer added, for the warm burst and for the listener's first burst. `--phase-sweep` replays the
same network draws with every arrival shifted by 0-20 ms (0.5 ms steps by default) and prints
the worst PESQ-WB: whether a packet makes its playout slot can depend on the phase between the
talker's packets and the listener's playout clock. The evaluation itself is pure (codec.quality);
this module only reads the file and prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from codec.errors import CodecError
from codec.jitter import JitterConfig
from codec.pcm import read_wav, resample
from codec.protection import ProtectMode
from codec.quality import (
    RATE,
    Impairment,
    QualityConfig,
    QualityResult,
    evaluate,
    phase_sweep,
)
from xixin.errors import one_line
from xixin.options import XixinArgumentParser

DESCRIPTION = (
    "Measure voice quality through the Xixin pipeline under packet loss and jitter. "
    "Jitter follows netem: each message is delayed by base +/- jitter (uniform)."
)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `quality` subcommand on the `xixin` command line."""
    parser = subparsers.add_parser("quality", help="measure voice quality", description=DESCRIPTION)
    _arguments(parser)
    parser.set_defaults(handler=run)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("speech", type=Path, help="speech WAV file (any rate, mono or stereo)")
    parser.add_argument("--loss", type=float, default=0.0, help="packet loss %% (default 0)")
    parser.add_argument(
        "--burst", type=float, default=1.0, help="mean loss run length; 1 = random loss"
    )
    parser.add_argument("--jitter", type=float, default=0.0, help="jitter in ms (default 0)")
    parser.add_argument(
        "--reorder", type=float, default=0.0, help="%% of messages held back 1-2 frames"
    )
    parser.add_argument("--bitrate", type=int, default=16, help="clean-channel kbit/s (8-32)")
    parser.add_argument("--cap", type=float, default=32.0, help="max kbit/s on air (default 32)")
    parser.add_argument(
        "--protect",
        choices=[mode.value for mode in ProtectMode],
        default=ProtectMode.AUTO.value,
        help="loss protection (default auto: adapts to receiver reports)",
    )
    parser.add_argument("--complexity", type=int, default=9, help="encoder complexity 0-10")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the network model")
    parser.add_argument(
        "--cold", action="store_true", help="send only the first burst (a cold listener)"
    )
    parser.add_argument(
        "--phase-sweep",
        type=float,
        nargs="?",
        const=0.5,
        default=None,
        metavar="STEP_MS",
        help="also run with arrivals shifted 0-20 ms in STEP_MS steps (default 0.5) and report "
        "the worst PESQ-WB",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    try:
        data = Path(args.speech).read_bytes()
    except OSError as exc:
        print(f"xixin quality: cannot read {args.speech}: {one_line(exc)}", file=sys.stderr)
        return 2
    try:
        pcm = read_wav(data)
        speech = resample(pcm.samples, pcm.rate, RATE)
        config = QualityConfig(
            bitrate=args.bitrate * 1000,
            protect=ProtectMode(args.protect),
            max_kbps_on_air=args.cap,
            complexity=args.complexity,
            warmup=not args.cold,
            impairment=Impairment(
                loss_pct=args.loss,
                burst_len=args.burst,
                jitter_ms=args.jitter,
                reorder_pct=args.reorder,
            ),
            jitter=JitterConfig(),
        )
        if args.phase_sweep is None:
            result = evaluate(speech, config, seed=args.seed)
        else:
            result = phase_sweep(speech, config, seed=args.seed, step_ms=args.phase_sweep)
    except CodecError as exc:
        print(f"xixin quality: {one_line(exc)}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(format_result(result, args))
    return 0


def format_result(result: QualityResult, args: argparse.Namespace) -> str:
    protection = "red" if result.final_red else "fec" if result.final_fec else "none"
    lines = [
        f"speech      {args.speech} ({result.seconds:.1f} s)",
        f"network     loss {args.loss:g}% (run {args.burst:g}), jitter {args.jitter:g} ms, "
        f"reorder {args.reorder:g}%  -> {result.channel_loss_pct:.1f}% lost",
        f"protection  {args.protect}: ended with {protection} at "
        f"{result.final_bitrate / 1000:g} kbit/s, {result.kbps_on_air:.1f} kbit/s on air",
        f"PESQ-WB     {result.pesq_wb:.2f}",
        f"STOI        {result.stoi:.3f}",
        f"expand rate {100 * result.expand_rate:.1f}%   late rate {100 * result.late_rate:.1f}%",
        f"recovered   {result.fec_recovered} by FEC, {result.red_recovered} by RED, "
        f"{result.concealed} concealed",
        f"added delay mean {result.added_delay_mean_ms:.0f} ms, "
        f"p95 {result.added_delay_p95_ms:.0f} ms, target {result.target_delay_ms:.0f} ms",
        f"first burst PESQ-WB {result.first_burst_pesq_wb:.2f}, "
        f"STOI {result.first_burst_stoi:.3f}, "
        f"expand rate {100 * result.first_burst_expand_rate:.1f}%, "
        f"late rate {100 * result.first_burst_late_rate:.1f}%",
    ]
    if result.phase_sweep_min is not None:
        lines.append(
            f"phase sweep worst PESQ-WB {result.phase_sweep_min:.2f} "
            f"(arrivals +{result.phase_sweep_worst_shift_ms:g} ms; 0-20 ms "
            f"in {args.phase_sweep:g} ms steps)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = XixinArgumentParser(prog="xixin quality", description=DESCRIPTION)
    _arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
