# shellcheck shell=bash
# Moving a staged folder to the device machine in parts (sourced by gpu-bench.sh and
# cuda-check.sh).
#
# A device call carries the working tree and the paths it names, 64 MiB in all. The tracked
# tree alone is about 48 MB (the committed bundles), so the staged binaries and ONNX Runtime
# libraries (about 53 MB compressed, 37 of them the CUDA provider) cannot travel in one call.
# parts_pack cuts the staged folder into parts that each fit beside the tree; one call per part
# on the same warm machine (it stays warm for 30 s after a call) collects them in $G/parts, and
# the last call unpacks them. parts.sha256 travels with every part and says what is complete.
#
#   parts_pack SRC OUTDIR   SRC's files into OUTDIR/part-NN and OUTDIR/parts.sha256
#   parts_receive OUTDIR G  copies the parts present in OUTDIR (checked) into G/parts
#   parts_unpack G DEST     checks that every part is there and unpacks them into DEST

TRANSFER_LIMIT=$((64 * 1024 * 1024))

parts_tree_bytes() { # what a device call sends besides the carried paths, in bytes
  { git ls-files -z; git ls-files -z --others --exclude-standard; } |
    xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}'
}

parts_pack() {
  local src=$1 out=$2 room size
  room=$(( TRANSFER_LIMIT - $(parts_tree_bytes) - 2 * 1024 * 1024 )) # 2 MiB for parts.sha256 and margin
  [ "$room" -gt $((1024 * 1024)) ] ||
    { echo "parts: the working tree leaves no room for a part (${room} bytes)" >&2; return 1; }
  rm -f "$out"/part-* "$out/parts.sha256"
  tar -C "$src" -cf - . | split -b "$room" -d -a 2 - "$out/part-"
  (cd "$out" && sha256sum part-* > parts.sha256)
  size=$(du -cb "$out"/part-* | tail -1 | cut -f1)
  echo "parts: $(ls "$out"/part-* | wc -l) parts of at most $room bytes ($size in all) beside a tree of $(parts_tree_bytes) bytes"
}

parts_receive() {
  local out=$1 g=$2 p n=0
  mkdir -p "$g/parts"
  [ -f "$out/parts.sha256" ] || { echo "parts: $out/parts.sha256 was not carried" >&2; return 1; }
  # Parts of another staging are of no use: start again.
  cmp -s "$out/parts.sha256" "$g/parts/parts.sha256" || rm -f "$g/parts"/part-*
  cp "$out/parts.sha256" "$g/parts/"
  for p in "$out"/part-*; do
    [ -f "$p" ] || continue
    grep -q " $(basename "$p")\$" "$out/parts.sha256" || { echo "parts: $p is not in parts.sha256" >&2; return 1; }
    cp "$p" "$g/parts/" && n=$((n + 1))
  done
  (cd "$g/parts" && sha256sum --quiet -c --ignore-missing parts.sha256) || return 1
  echo "parts: received $n; have $(cd "$g/parts" && ls part-* 2>/dev/null | wc -l) of $(wc -l < "$g/parts/parts.sha256")"
}

parts_unpack() {
  local g=$1 dest=$2 missing
  missing=$(cd "$g/parts" && awk '{print $2}' parts.sha256 | while read -r f; do [ -f "$f" ] || echo "$f"; done)
  if [ -n "$missing" ]; then
    echo "parts: missing $(echo $missing) (the machine was given back between calls, or a call was left out): send them again" >&2
    return 1
  fi
  (cd "$g/parts" && sha256sum --quiet -c parts.sha256) || return 1
  mkdir -p "$dest" && cat "$g/parts"/part-* | tar -C "$dest" -xf -
}
