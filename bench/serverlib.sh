# shellcheck shell=bash
# Shared shell helpers for bench/asgi and bench/io (sourced, not run).
#
# The caller sets PROG (its name, for messages), PYTHON, TOOL (benchtool.py,
# for "tree PID"), READY_TIMEOUT and STOP_TIMEOUT, and declares SERVER_PID="".
# Process handling is bench/run's and bench/fairness's: every server runs in
# a session of its own (setsid), and only the PIDs recorded here (the server
# and its process tree) are ever signalled.

# pid_alive PID: true if PID runs (a zombie does not count).
pid_alive() {
	local st
	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
	[ -n "$st" ] && [ "$st" != Z ]
}

# stop_pids PID...: SIGTERM these PIDs, SIGKILL what is left after
# STOP_TIMEOUT. Only the PIDs given are signalled.
stop_pids() {
	[ $# -gt 0 ] || return 0
	local pid deadline alive
	kill -TERM "$@" 2>/dev/null || true
	deadline=$((SECONDS + STOP_TIMEOUT))
	while :; do
		alive=()
		for pid in "$@"; do pid_alive "$pid" && alive+=("$pid"); done
		[ ${#alive[@]} -eq 0 ] && break
		if [ $SECONDS -ge $deadline ]; then
			echo "$PROG: still running after ${STOP_TIMEOUT}s, killing: ${alive[*]}" >&2
			kill -KILL "${alive[@]}" 2>/dev/null || true
			sleep 0.5
			break
		fi
		sleep 0.1
	done
}

# stop_server: SIGTERM the server's session and every process of its tree
# recorded now (taipan's workers and uvicorn's spawned workers are found
# through their parent, whatever their session); SIGKILL what is left.
stop_server() {
	[ -n "$SERVER_PID" ] || return 0
	local pids=()
	if pid_alive "$SERVER_PID"; then
		mapfile -t pids < <("$PYTHON" "$TOOL" tree "$SERVER_PID")
		kill -TERM -- "-$SERVER_PID" 2>/dev/null || true
	fi
	stop_pids "${pids[@]}"
	wait "$SERVER_PID" 2>/dev/null || true
	SERVER_PID=""
}

# port_in_use PORT: true if something accepts connections on 127.0.0.1:PORT.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# http_status URL: the status code of GET URL, 000 if no answer.
http_status() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" || true; }

# worker_count: how many worker processes the running server has: children
# of the server running taipan_worker.py (taipan) or multiprocessing's
# spawn_main (uvicorn --workers; its resource tracker is not a worker).
worker_count() {
	local pid args n=0
	while read -r pid args; do
		case $args in *taipan_worker.py* | *spawn_main*) n=$((n + 1)) ;; esac
	done < <(ps -o pid=,args= --ppid "$SERVER_PID" 2>/dev/null)
	echo "$n"
}

# start_server LOG URL WORKERS CMD...: start CMD pinned to CPU 0 in a session
# of its own, from /tmp (so nothing lands in the tree), and wait until URL
# answers 200 and WORKERS workers run; exit 1 with the log's tail if that
# takes longer than READY_TIMEOUT. Sets SERVER_PID.
start_server() {
	local log=$1 url=$2 want=$3
	shift 3
	# setsid does not fork here (a background job is not a group leader),
	# so $! is the server itself.
	(cd /tmp && exec setsid taskset -c 0 "$@") >"$log" 2>&1 </dev/null &
	SERVER_PID=$!
	local ready=0 deadline=$((SECONDS + READY_TIMEOUT))
	while [ $SECONDS -lt $deadline ]; do
		pid_alive "$SERVER_PID" || break
		if [ "$(http_status "$url")" = 200 ] && [ "$(worker_count)" -ge "$want" ]; then
			ready=1
			break
		fi
		sleep 0.2
	done
	if [ $ready = 0 ]; then
		echo "$PROG: did not answer 200 with $want workers on $url within ${READY_TIMEOUT}s: $*; its log:" >&2
		tail -n 30 "$log" >&2
		exit 1
	fi
	# The CPU and memory figures hang off this PID: it must be the server,
	# the leader of its own session, not a forked-off wrapper.
	if [ "$(ps -o sid= -p "$SERVER_PID" | tr -d ' ')" != "$SERVER_PID" ]; then
		echo "$PROG: PID $SERVER_PID is not the session leader of $*" >&2
		exit 1
	fi
	# A worker may answer before its siblings have imported the app: give
	# them a moment.
	sleep 1
}

# git_rev: the short commit, with "+uncommitted changes" if the tree is dirty
# (read-only: --no-optional-locks does not even refresh the index).
git_rev() {
	local dirty=""
	if [ -n "$(git -C "$ROOT" --no-optional-locks status --porcelain 2>/dev/null)" ]; then
		dirty="+uncommitted changes"
	fi
	echo "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$dirty"
}
