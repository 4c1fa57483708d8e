package python

import (
	"context"
	"os/exec"
	"testing"
	"time"
)

// sendPartsCheck runs the worker's send_parts over a real socket pair whose
// sender has a timeout (so sendmsg(2) may send only part of what it is
// given, as it does when a signal interrupts a blocking one) and a small
// send buffer, with a reader that drains slowly. Every byte must arrive, in
// order, whatever sendmsg took at once; it prints what it checked.
const sendPartsCheck = `
import socket, sys, threading, time
sys.path.insert(0, ".")
import taipan_worker as w

a, b = socket.socketpair()
a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
a.settimeout(10)
b.settimeout(5)
parts = [bytes([i % 251]) * (1000 + 7919 * i % 70000) for i in range(40)]
want = b"".join(parts)
got = bytearray()

def drain():
    while len(got) < len(want):
        time.sleep(0.001)
        try:
            data = b.recv(3000)
        except socket.timeout:
            break
        if not data:
            break
        got.extend(data)

t = threading.Thread(target=drain)
t.start()
partial = []
real = a.sendmsg
a_sendmsg = lambda bufs: partial.append(real(bufs)) or partial[-1]
class Sock:
    sendmsg = staticmethod(a_sendmsg)
    sendall = a.sendall
w.send_parts(Sock, parts)
t.join()
assert bytes(got) == want, (len(got), len(want))
assert partial and partial[0] < len(want), partial
print("ok", len(want), "bytes, sendmsg took", partial[0])
`

func TestSendPartsCompletesPartialSends(t *testing.T) {
	python, err := exec.LookPath("/usr/bin/python3")
	if err != nil {
		t.Skip("no /usr/bin/python3")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-c", sendPartsCheck)
	cmd.Dir = "."
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Logf("%s", out)
}
