"""Short tracks synthesised with the standard library, for the demo and the tests.

A newcomer's first run needs music without a download or a licence question, so
chorus writes its own: a few bars of plucked notes as 16-bit PCM WAV. The same
title always gives the same bytes, hence the same CID on every machine.
"""

from __future__ import annotations

import array
import hashlib
import io
import math
import wave

__all__ = ["synth_track"]

_SCALE = (261.63, 293.66, 329.63, 392.00, 440.00, 523.25, 587.33, 659.25)


def synth_track(title: str, seconds: float = 8.0, rate: int = 22_050) -> bytes:
    """A WAV file of `seconds` of notes chosen from `title` (deterministic)."""
    seed = hashlib.sha256(title.encode("utf-8")).digest()
    note_len = rate // 4
    total = int(seconds * rate)
    samples = array.array("h", bytes(2 * total))
    for start in range(0, total, note_len):
        note = seed[(start // note_len) % len(seed)]
        freq = _SCALE[note % len(_SCALE)] * (2 if note & 0x80 else 1)
        step = 2 * math.pi * freq / rate
        for i in range(min(note_len, total - start)):
            decay = math.exp(-4.0 * i / note_len)
            value = math.sin(step * i) + 0.3 * math.sin(2 * step * i)
            samples[start + i] = int(12_000 * decay * value)
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.tobytes())
    return out.getvalue()
