#!/usr/bin/env python3
"""Rewrites a CUDA source into C++ for the CUDA emulator (device_runtime.h).

Two constructs of CUDA C++ are not C++ and are rewritten, and one gets a
call after it; everything else is compiled as written:
  kernel<<<grid, block, shared, stream>>>(args);
    -> ::tokenfab::cuda_emu::LaunchKernel("kernel", kernel,
           ::tokenfab::cuda_emu::Config(grid, block, shared, stream), args);
  extern __shared__ [__align__(N)] T name[];
    -> T* name = static_cast<T*>(::tokenfab::cuda_emu::DynamicShared());
  __shared__ T a[N], b;
    -> __shared__ T a[N], b; ::tokenfab::cuda_emu::FreshShared(&a, sizeof(a), "a"); (and b)
       (a static shared variable is a static of the OS thread that runs the
       blocks; FreshShared fills it with garbage at each block's start, as
       a GPU's shared memory holds whatever the last block left there, and
       hands it to the race check by name).
Line numbers are kept (a #line directive names the original file), so
compiler messages and debuggers point into the CUDA source.

  transform_cu.py IN.cu OUT.cc
"""
import re
import sys

LAUNCH = re.compile(
    r"(?P<name>[A-Za-z_][\w:]*(?:<[^<>;{}]*>)?)\s*<<<(?P<config>.*?)>>>\s*\((?P<close>\s*\))?",
    re.S)
SHARED = re.compile(
    r"extern\s+__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s+)?(?P<type>[\w:\s]+?)\s+(?P<name>\w+)\s*\[\s*\]\s*;")

STATIC_SHARED = re.compile(
    r"(?<![\w])__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s+)?[\w:]+\s+(?P<decls>[^;()\n]+);")


def keep_lines(old, new):
    return new + "\n" * (old.count("\n") - new.count("\n"))


def launch(m):
    name = m.group("name")
    base = re.sub(r"<.*", "", name, flags=re.S)
    out = (f'::tokenfab::cuda_emu::LaunchKernel("{base}", {name}, '
           f'::tokenfab::cuda_emu::Config({m.group("config")})')
    out += ")" if m.group("close") else ", "
    return keep_lines(m.group(0), out)


def shared(m):
    t = " ".join(m.group("type").split())
    return keep_lines(m.group(0),
                      f"{t}* {m.group('name')} = static_cast<{t}*>(::tokenfab::cuda_emu::DynamicShared());")


def static_shared(m):
    names = [re.match(r"\s*(\w+)", d).group(1) for d in m.group("decls").split(",")]
    calls = "".join(f' ::tokenfab::cuda_emu::FreshShared(&{n}, sizeof({n}), "{n}");'
                    for n in names)
    return m.group(0) + calls


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, encoding="utf-8") as f:
        text = f.read()
    text, launches = LAUNCH.subn(launch, text)
    text, arrays = SHARED.subn(shared, text)
    text = STATIC_SHARED.sub(static_shared, text)
    if "<<<" in text or "extern __shared__" in text:
        sys.exit(f"{src}: a launch or shared array this script cannot rewrite")
    with open(dst, "w", encoding="utf-8") as f:
        f.write(f'#line 1 "{src}"\n{text}')


if __name__ == "__main__":
    main()
