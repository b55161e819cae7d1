"""Fails a build whose AVX2 or baseline CPU kernels can reach an instruction their CPUs lack.

    python kernels/check_isa.py cct_fast/libcct_fast_ops.so [--objdump objdump]

CMake runs it after linking the op library and cct_cpu_kernels. The kernels are compiled once
per instruction set into the namespaces cct_kernels::{avx512_bf16,avx512,avx2,baseline}. From
each namespace's functions it follows every direct call and jump through the disassembly,
through the PLT into functions the file defines, and refuses:

- from the avx2 kernels, EVEX-encoded instructions (AVX-512); from the baseline ones, also
  VEX-encoded ones (AVX);
- from any kernels, a function of the file outside their own namespace: an inline or template
  function (std::vector's, say) that every per-ISA file compiled with its own flags, of which
  the linker kept one copy for all. That is how an AVX2 CPU once ran AVX-512 code.

Calls to functions the file does not define (libc, libm, the C++ runtime) end the walk: those
choose their own code for the CPU. Exits 1 naming the path to each problem.

The check is checked against itself: the avx512 namespace must hold EVEX instructions and the
avx2 one VEX instructions, or the disassembly was not read as it should be.
"""

from __future__ import annotations

import argparse
import bisect
import re
import subprocess
import sys
from dataclasses import dataclass, field

# Prefixes that may stand before a VEX or EVEX escape byte in 64-bit code: operand and address
# size, segments, lock, rep.
LEGACY_PREFIXES = {0x66, 0x67, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65, 0xF0, 0xF2, 0xF3}
EVEX, VEX = "EVEX (AVX-512)", "VEX (AVX)"
# What each namespace's CPUs lack: the encodings its code must not reach.
FORBIDDEN = {"avx2": {EVEX}, "baseline": {EVEX, VEX}}
FUNCTION = re.compile(r"^([0-9a-f]+) <(.+)>:$")
INSTRUCTION = re.compile(r"^\s*([0-9a-f]+):\t((?:[0-9a-f]{2} )+)\s*\t?(.*)$")
DIRECT_BRANCH = re.compile(r"^(?:call|jmp|j[a-z]{1,3})q?\s+([0-9a-f]+) <")


@dataclass
class Function:
    name: str
    start: int
    instructions: list = field(default_factory=list)  # (address, encoding or None, text)
    targets: set = field(default_factory=set)  # addresses of direct calls and jumps


def encoding(code: bytes):
    """EVEX, VEX or None for one instruction's bytes. In 64-bit mode 0x62 can only open an EVEX
    prefix and 0xC4/0xC5 a VEX one (BOUND, LES and LDS do not exist there)."""
    for byte in code:
        if byte in LEGACY_PREFIXES:
            continue
        return EVEX if byte == 0x62 else VEX if byte in (0xC4, 0xC5) else None
    return None


def disassemble(path, objdump="objdump"):
    """The functions of ``path`` by start address, from its symbol table."""
    listing = subprocess.run(
        [objdump, "-d", "-C", "--wide", "--insn-width=15", path],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    functions, current = {}, None
    for line in listing.splitlines():
        if match := FUNCTION.match(line):
            current = Function(match.group(2), int(match.group(1), 16))
            functions[current.start] = current
        elif current and (match := INSTRUCTION.match(line)):
            address, code, text = match.groups()
            current.instructions.append(
                (int(address, 16), encoding(bytes.fromhex(code)), text.strip())
            )
            if branch := DIRECT_BRANCH.match(text.strip()):
                current.targets.add(int(branch.group(1), 16))
    return functions


def namespace_roots(functions, namespace):
    return [f for f in functions.values() if f"cct_kernels::{namespace}::" in f.name]


def reachable(functions, roots):
    """(function, path of names from a root) for each function of the file that ``roots``
    reach through direct calls and jumps, the roots included."""
    starts = sorted(functions)
    by_name = {f.name: f for f in functions.values()}
    reached, queue = {}, [(root, (root.name,)) for root in roots]
    while queue:
        function, path = queue.pop()
        if function.start in reached:
            continue
        reached[function.start] = (function, path)
        for target in function.targets:
            at = bisect.bisect_right(starts, target) - 1
            callee = functions[starts[at]] if at >= 0 else None
            if callee is not None and callee.name.endswith("@plt"):
                # A call through the PLT to a function this file defines (a C++ library
                # template has default visibility) binds to that definition; any other is
                # libc's, libm's or the C++ runtime's, which choose their own code per CPU.
                callee = by_name.get(callee.name.removesuffix("@plt"))
            if callee is not None and callee.start != function.start:
                queue.append((callee, path + (callee.name,)))
    return reached.values()


def _trail(path):
    names = [name if len(name) <= 150 else name[:147] + "..." for name in path]
    return "\n    via " + "\n     -> ".join(names)


def check(path, objdump="objdump"):
    """The problems of the library or program at ``path``, as lines; none when it is sound."""
    functions = disassemble(path, objdump)
    problems = []
    for namespace, must_hold in (("avx512", EVEX), ("avx2", VEX)):
        kinds = {
            kind for f in namespace_roots(functions, namespace) for _, kind, _ in f.instructions
        }
        if must_hold not in kinds:
            problems.append(
                f"{path}: no {must_hold} instruction found in cct_kernels::{namespace}: the file "
                "has no symbol table (stripped?) or was built without the per-ISA flags; the "
                "check cannot tell what its kernels run."
            )
    if problems:
        return problems
    for namespace in ("avx512_bf16", "avx512", "avx2", "baseline"):
        forbidden = FORBIDDEN.get(namespace, set())
        for function, trail in reachable(functions, namespace_roots(functions, namespace)):
            if f"cct_kernels::{namespace}::" not in function.name:
                problems.append(
                    f"{path}: the {namespace} kernels call code compiled outside their own "
                    "namespace, which the linker may have taken from another instruction set's "
                    "file" + _trail(trail)
                )
            for address, kind, text in function.instructions:
                if kind in forbidden:
                    problems.append(
                        f"{path}: the {namespace} kernels reach {kind} code, which a CPU "
                        f"without it cannot run: {address:x}: {text}" + _trail(trail)
                    )
                    break
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="the op library or cct_cpu_kernels")
    parser.add_argument("--objdump", default="objdump")
    arguments = parser.parse_args(argv)
    problems = [line for path in arguments.files for line in check(path, arguments.objdump)]
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
