"""Idle containers that keep a compose host's deploy state in use, so prunes leave it.

Every prune removes only what nothing uses: a stopped container, a volume no container mounts,
an image no container runs. A running container keeps its volume and its image, and a
container's name is claimed exclusively (a second create of it fails). So on a compose host:

- the history lives as files in the volume ``compose-tasks-state-<project>``, mounted by the
  idle container of the same name (restarted with the engine: ``unless-stopped``);
- the lock is an idle container ``compose-tasks-lock-<project>`` (taken by creating it), its
  lease renewed by writing the engine's time into it.

The idle image is made here, not pulled: a program of a few dozen bytes that waits for ever
(``pause`` on x86_64, ``ppoll`` on aarch64), imported as the only file of an image.
"""

from __future__ import annotations

import contextlib
import struct

from compose_tasks.docker.sdk import Kind, Sdk
from compose_tasks.errors import Conflict, NotFound, UserError

IMAGE = "compose-tasks/idle:1"
LABEL_IDLE = "org.compose-tasks.idle"  # on the image: what it is for
PROGRAM = "idle"
STATE_DIR = "/state"

# aarch64: mov x8,#73 (ppoll); mov x0..x3,#0 (no files, no timeout, no mask); svc #0; b back
_ARM64 = [0xD2800928, 0xD2800000, 0xD2800001, 0xD2800002, 0xD2800003, 0xD4000001, 0x17FFFFFA]
# (ELF machine, code): a loop around one blocking system call
_CODE = {
    "x86_64": (0x3E, bytes.fromhex("b8220000000f05ebf7")),  # mov eax,34; syscall; jmp
    "aarch64": (0xB7, struct.pack("<7I", *_ARM64)),
}
_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}


def program(arch: str) -> bytes:
    """A static ELF executable for ``arch`` that blocks for ever without using the CPU."""
    machine, code = _CODE[_ALIASES.get(arch, arch)]
    base, start = 0x400000, 64 + 56  # loaded at ``base``; the code after both headers
    size = start + len(code)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # 64-bit, little-endian, current
    header = struct.pack(
        "<HHIQQQIHHHHHH", 2, machine, 1, base + start, 64, 0, 0, 64, 56, 1, 0, 0, 0
    )  # executable, entry point, one program header
    segment = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)  # load, r-x
    return ident + header + segment + code


def image(api: Sdk) -> str:
    """The idle image on the engine ``api``, imported when it lacks it."""
    with contextlib.suppress(NotFound):
        api.image(IMAGE)
        return IMAGE
    arch = api.architecture()
    if _ALIASES.get(arch, arch) not in _CODE:
        raise UserError(
            f"deploy state on a compose host needs an x86_64 or aarch64 engine, not {arch!r}"
        )
    api.import_file(IMAGE, PROGRAM, program(arch), [f'CMD ["/{PROGRAM}"]', f"LABEL {LABEL_IDLE}=1"])
    return IMAGE


def keeper(api: Sdk, name: str, labels: dict[str, str]) -> None:
    """The running idle container ``name`` mounting the volume ``name`` at ``STATE_DIR``:
    made when missing, started when stopped (both with ``labels``)."""
    try:
        found = api.container(name)
    except NotFound:
        api.create(Kind.VOLUME, name, labels)
        with contextlib.suppress(Conflict):  # another run made it just now
            api.run_idle(name, image(api), labels, {name: STATE_DIR})
        return
    if found.status != "running":
        api.start(name)
