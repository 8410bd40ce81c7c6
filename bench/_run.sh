# Sourced by the bench/*.sh figure scripts: run NAME COMMAND... saves the command line, its
# output and its wall time in $out/NAME.txt, and shows the output's tail.
run() {
    local name=$1; shift
    echo "\$ $*" | tee "$out/$name.txt"
    /usr/bin/time -f "wall %e s" "$@" >>"$out/$name.txt" 2>&1
    tail -n 12 "$out/$name.txt"
}
machine() {  # the machine and commit, into $out/machine.txt
    { lscpu | grep -E "Model name|^CPU\(s\)"; git log -1 --format='commit %h %s'; } >"$out/machine.txt"
}
