package e2e

// Scale-out: several taipan instances, each on a host of its own (a network
// namespace joined to this one by a veth pair, as separate machines or pods
// would be), behind a real nginx and a real HAProxy, rolled and killed
// while a counted load runs through both balancers. docs/scale-out.md
// quotes what these tests measure.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// haproxyPath is Debian's HAProxy; scripts/deps installs it.
const haproxyPath = "/usr/sbin/haproxy"

// The cluster's settings. The balancers' timings are short so that the
// tests are quick; docs/scale-out.md gives production values.
const (
	scaleHosts       = 3
	scaleWorkers     = "2"   // -w of every instance
	scaleDrainDelay  = "1.5" // --drain-delay, seconds: longer than HAProxy needs to see /readyz fail
	scaleAppPort     = "8000"
	scaleAdminPort   = "9100"
	nginxFailTimeout = time.Second // max_fails=1 fail_timeout=1s
	// The load is bounded in time and count whatever happens.
	scaleLoadMaxDuration = 90 * time.Second
	scaleLoadMaxRequests = 200000
	scaleGetPath         = "/work?ms=5" // 5 ms in the app, so requests are in flight at every moment
)

// scaleCodeDir is a release of the scale-out app: "v1" or "v2".
func scaleCodeDir(t testing.TB, version string) string {
	return filepath.Join(appsDir(t), "scaleapp_"+version)
}

// requireHAProxy skips the test when HAProxy is not installed, and fails it
// in CI, where scripts/deps must have installed it.
func requireHAProxy(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(haproxyPath); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s missing in CI (apt-get install haproxy): %v", haproxyPath, err)
		}
		t.Skipf("%s not installed (apt-get install haproxy)", haproxyPath)
	}
}

// ipCmd runs ip(8) and returns its combined output.
func ipCmd(args ...string) (string, error) {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// scaleHost is one machine of the cluster: a network namespace with an
// address of its own, where one taipan instance at a time runs.
type scaleHost struct {
	name string // "h0": instances on it are named "h0.0", "h0.1", ...
	ns   string // the network namespace
	ip   string // its address, inside the namespace
	gen  int    // instances started on it so far

	srv      *Server           // the current instance
	instance string            // its name, which its answers carry
	logs     map[string]string // access log of every instance it ran, by name
}

// addr is the instance's client address, as the balancers know it.
func (h *scaleHost) addr() string { return net.JoinHostPort(h.ip, scaleAppPort) }

// admin is the base URL of the instance's --metrics-bind listener.
func (h *scaleHost) admin() string { return "http://" + net.JoinHostPort(h.ip, scaleAdminPort) }

// netnsSets numbers the sets of hosts this process creates.
var netnsSets atomic.Int32

// netnsHosts creates n hosts: for each, a network namespace and a veth
// pair with a /30 between it and this namespace. Names carry the test
// process's pid and a set number, so parallel runs do not collide, and
// everything created is deleted when the test ends, whether it passed or
// not.
func netnsHosts(t *testing.T, n int) []*scaleHost {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("scale-out tests need root for ip netns (network namespaces and veth pairs)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip(8) not found (apt-get install iproute2)")
	}
	pid, set := os.Getpid(), netnsSets.Add(1)
	prefix := freeSubnet(t, pid)
	var hosts []*scaleHost
	for i := 0; i < n; i++ {
		ns := fmt.Sprintf("taipan-scale-%d-%d-%d", pid, set, i)
		if out, err := ipCmd("netns", "add", ns); err != nil {
			if i == 0 && (strings.Contains(out, "not permitted") || strings.Contains(out, "denied")) {
				t.Skipf("ip netns is not permitted here: %v", err)
			}
			t.Fatal(err)
		}
		t.Cleanup(func() { ipCmd("netns", "del", ns) })
		// Interface names are at most 15 bytes: "ts" + pid + "x" + set + h|n + i.
		hostIf, nsIf := fmt.Sprintf("ts%dx%dh%d", pid, set, i), fmt.Sprintf("ts%dx%dn%d", pid, set, i)
		if _, err := ipCmd("link", "add", hostIf, "type", "veth", "peer", "name", nsIf, "netns", ns); err != nil {
			t.Fatal(err)
		}
		// Runs before the namespace is deleted (cleanups run last first);
		// deleting one end deletes the pair.
		t.Cleanup(func() { ipCmd("link", "del", hostIf) })
		hostIP, nsIP := fmt.Sprintf("%s.%d", prefix, 4*i+1), fmt.Sprintf("%s.%d", prefix, 4*i+2)
		for _, args := range [][]string{
			{"addr", "add", hostIP + "/30", "dev", hostIf},
			{"link", "set", hostIf, "up"},
			{"-n", ns, "addr", "add", nsIP + "/30", "dev", nsIf},
			{"-n", ns, "link", "set", nsIf, "up"},
			{"-n", ns, "link", "set", "lo", "up"},
		} {
			if _, err := ipCmd(args...); err != nil {
				t.Fatal(err)
			}
		}
		hosts = append(hosts, &scaleHost{name: fmt.Sprintf("h%d", i), ns: ns, ip: nsIP, logs: map[string]string{}})
	}
	return hosts
}

// freeSubnet picks 10.A.B (a /24 for the hosts' /30s), derived from pid and
// used by no address or route of this machine.
func freeSubnet(t *testing.T, pid int) string {
	t.Helper()
	addrs, err := ipCmd("-4", "-o", "addr", "show")
	if err != nil {
		t.Fatal(err)
	}
	routes, err := ipCmd("-4", "route", "show", "table", "all")
	if err != nil {
		t.Fatal(err)
	}
	for k := 0; k < 1<<16; k++ {
		v := (pid + k) & 0xffff
		prefix := fmt.Sprintf("10.%d.%d", v>>8, v&0xff)
		if !strings.Contains(addrs, prefix+".") && !strings.Contains(routes, prefix+".") {
			return prefix
		}
	}
	t.Fatal("no free 10.x.y.0/24 on this machine")
	return ""
}

// startInNamespace runs taipan inside the network namespace ns (ip netns
// exec execs it, so the process is taipan itself and signals reach it). It
// does not wait for readiness. It is stopped when the test ends.
func startInNamespace(t *testing.T, ns, addr string, args ...string) *Server {
	t.Helper()
	full := append([]string{"netns", "exec", ns, taipanBin, "--python", pythonPath()}, args...)
	s := &Server{t: t, exited: make(chan struct{}), Addr: addr, URL: "http://" + addr}
	s.cmd = exec.Command("ip", full...)
	s.cmd.Stdout = lockedWriter{&s.mu, &s.stdout}
	s.cmd.Stderr = lockedWriter{&s.mu, &s.stderr}
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start taipan in %s: %v", ns, err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(s.Stop)
	return s
}

// probe GETs url and returns the status, or an error.
func probe(url string) (int, string, error) {
	c := timeoutClient(2 * time.Second)
	defer c.CloseIdleConnections()
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// scaleCluster is the hosts, their taipans, and the two balancers.
type scaleCluster struct {
	t          *testing.T
	dir        string
	hosts      []*scaleHost
	nginx      *nginxProc
	nginxURL   string
	haproxy    *haproxyProc
	haproxyURL string
}

// newScaleCluster creates the hosts, starts one taipan serving release
// version on each, then nginx and HAProxy in front of them, and waits
// until both balancers route to every instance.
func newScaleCluster(t *testing.T, version string) *scaleCluster {
	t.Helper()
	requireNginx(t)
	requireHAProxy(t)
	c := &scaleCluster{t: t, dir: t.TempDir()}
	c.hosts = netnsHosts(t, scaleHosts)
	for _, h := range c.hosts {
		c.launch(h, version)
	}
	for _, h := range c.hosts {
		c.waitReady(h)
	}
	c.startNginx()
	c.startHAProxy()
	for _, h := range c.hosts {
		c.waitHAProxy(h.name, "UP", 10*time.Second)
	}
	return c
}

// launch starts the next instance on h, serving the given release.
func (c *scaleCluster) launch(h *scaleHost, version string) {
	c.t.Helper()
	h.instance = fmt.Sprintf("%s.%d", h.name, h.gen)
	h.gen++
	log := filepath.Join(c.dir, h.instance+".access.log")
	h.logs[h.instance] = log
	h.srv = startInNamespace(c.t, h.ns, h.addr(),
		"-b", h.addr(), "--metrics-bind", net.JoinHostPort(h.ip, scaleAdminPort),
		"-w", scaleWorkers, "--drain-delay", scaleDrainDelay, "--graceful-timeout", "10",
		// Longer than the balancers keep an idle connection to it (nginx's
		// keepalive_timeout, HAProxy's pool), so that taipan never closes
		// one just as a balancer sends a request on it.
		"--keep-alive", "75",
		"--access-logfile", log, "--chdir", scaleCodeDir(c.t, version),
		"-e", "SCALE_INSTANCE="+h.instance, "scaleapp:app")
}

// waitReady waits until h's instance answers 200 on /readyz.
func (c *scaleCluster) waitReady(h *scaleHost) {
	c.t.Helper()
	ok := pollUntil(60*time.Second, func() bool {
		select {
		case <-h.srv.exited:
			return true
		default:
		}
		code, _, err := probe(h.admin() + "/readyz")
		return err == nil && code == 200
	})
	select {
	case <-h.srv.exited:
		c.t.Fatalf("%s exited at start: %v\n%s", h.instance, h.srv.err, h.srv.Stderr())
	default:
	}
	if !ok {
		c.t.Fatalf("%s: /readyz not 200 within 60s\n%s", h.instance, h.srv.Stderr())
	}
}

// startNginx runs nginx with an upstream of every host. Open-source nginx
// has no active health checks: max_fails/fail_timeout take a server out
// after a failed attempt, and proxy_next_upstream retries the request
// elsewhere (never a non-idempotent one that reached a server).
func (c *scaleCluster) startNginx() {
	c.t.Helper()
	var servers strings.Builder
	for _, h := range c.hosts {
		fmt.Fprintf(&servers, "        server %s max_fails=1 fail_timeout=%ds;\n", h.addr(), int(nginxFailTimeout/time.Second))
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(c.t))
	c.nginxURL = "http://" + addr
	c.nginx = startNginx(c.t, filepath.Join(c.dir, "nginx"), addr, `
    log_format scale '$msec $request_method $request_uri $status "$upstream_addr" "$upstream_status"';
    upstream taipans {
`+servers.String()+`        keepalive 16;
        keepalive_timeout 60s;
    }
    server {
        listen `+addr+`;
        access_log DIR/upstream.log scale;
        location / {
            proxy_pass http://taipans;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 1s;
            proxy_next_upstream error timeout http_502 http_503;
            proxy_next_upstream_tries 3;
        }
    }
`)
}

// haproxyProc is a running HAProxy, in the foreground, with an admin
// socket for its servers' state.
type haproxyProc struct {
	*daemon
	sock string
}

// startHAProxy runs HAProxy with a backend of every host, each checked
// actively on its metrics port: GET /readyz, every 100 ms, DOWN after two
// failures, UP after two successes.
func (c *scaleCluster) startHAProxy() {
	c.t.Helper()
	dir := filepath.Join(c.dir, "haproxy")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		c.t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(c.t))
	c.haproxyURL = "http://" + addr
	var servers strings.Builder
	for _, h := range c.hosts {
		fmt.Fprintf(&servers, "    server %s %s check port %s\n", h.name, h.addr(), scaleAdminPort)
	}
	p := &haproxyProc{sock: filepath.Join(dir, "admin.sock")}
	conf := `global
    nbthread 1
    stats socket ` + p.sock + ` mode 600 level admin
    log stderr format raw local0 info
defaults
    mode http
    log global
    option httplog
    option dontlog-normal
    timeout connect 1s
    timeout client 15s
    timeout server 15s
    timeout check 1s
    retries 3
    option redispatch 1
    default-server inter 100ms fall 2 rise 2
frontend web
    bind ` + addr + `
    default_backend taipans
backend taipans
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
` + servers.String()
	confPath := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		c.t.Fatal(err)
	}
	p.daemon = startDaemon(c.t, "haproxy", exec.Command(haproxyPath, "-db", "-f", confPath))
	c.haproxy = p
	p.waitAccepting(c.t, addr, p.output)
}

// serverStates asks HAProxy's admin socket ("show stat") for the status of
// every server of the backend: UP, DOWN, "UP 1/2" while going down, ...
func (p *haproxyProc) serverStates() (map[string]string, error) {
	conn, err := net.DialTimeout("unix", p.sock, time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(conn, "show stat\n"); err != nil {
		return nil, err
	}
	csv, err := io.ReadAll(conn)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(string(csv)), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "# ") {
		return nil, fmt.Errorf("show stat: unexpected answer %q", csv)
	}
	col := map[string]int{}
	for i, name := range strings.Split(strings.TrimPrefix(lines[0], "# "), ",") {
		col[name] = i
	}
	states := map[string]string{}
	for _, line := range lines[1:] {
		f := strings.Split(line, ",")
		if len(f) <= col["status"] || f[col["pxname"]] != "taipans" || f[col["svname"]] == "BACKEND" {
			continue
		}
		states[f[col["svname"]]] = f[col["status"]]
	}
	return states, nil
}

// waitHAProxy waits until HAProxy reports server in state (UP or DOWN)
// and returns when it saw it.
func (c *scaleCluster) waitHAProxy(server, state string, timeout time.Duration) time.Time {
	c.t.Helper()
	var last map[string]string
	var err error
	if !pollUntil(timeout, func() bool {
		last, err = c.haproxy.serverStates()
		return err == nil && last[server] == state
	}) {
		c.t.Fatalf("haproxy: server %s not %s within %v: %v %v\n%s", server, state, timeout, last, err, c.haproxy.output())
	}
	return time.Now()
}

// outcome is one request of a load, as the client saw it.
type outcome struct {
	id                string // the request's target
	start             time.Time
	instance, version string // from the answer; "" when it failed
	err               string // "" when it succeeded (200 and a well-formed answer)
}

// lbLoad sends requests through a balancer from a few clients, each with
// its own keep-alive connection, until stopped, and records every one.
// It is bounded by scaleLoadMaxDuration and scaleLoadMaxRequests.
type lbLoad struct {
	name     string // "nginx GET", for messages
	sent     atomic.Int64
	inFlight atomic.Int64
	stop     chan struct{}
	wg       sync.WaitGroup

	mu       sync.Mutex
	outcomes []outcome
	served   map[string]int // answers by instance
}

// startLBLoad starts clients goroutines sending method to base+path (POST
// sends a small body, and an id in the query so that each request can be
// found in the instances' access logs).
func startLBLoad(t *testing.T, name, method, base, path string, clients int) *lbLoad {
	l := &lbLoad{name: name, stop: make(chan struct{}), served: map[string]int{}}
	deadline := time.Now().Add(scaleLoadMaxDuration)
	for i := 0; i < clients; i++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			tr := &http.Transport{
				DisableCompression:  true,
				MaxIdleConnsPerHost: 1,
				DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: testTimeout}
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				n := l.sent.Add(1)
				if n > scaleLoadMaxRequests || time.Now().After(deadline) {
					l.sent.Add(-1)
					return
				}
				target := path
				var body io.Reader
				if method == "POST" {
					target = fmt.Sprintf("%s?id=%s-%d", path, strings.ReplaceAll(name, " ", "-"), n)
					body = strings.NewReader("item=1")
				}
				o := l.do(client, method, base+target, body, target)
				l.record(o)
				if o.err != "" {
					time.Sleep(10 * time.Millisecond) // no hot loop on a dead balancer
				}
			}
		}()
	}
	t.Cleanup(func() { l.finish() })
	return l
}

// do sends one request and returns its outcome.
func (l *lbLoad) do(client *http.Client, method, url string, body io.Reader, id string) outcome {
	o := outcome{id: id, start: time.Now()}
	l.inFlight.Add(1)
	defer l.inFlight.Add(-1)
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		o.err = err.Error()
		return o
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := client.Do(req)
	if err != nil {
		o.err = err.Error()
		return o
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	f := strings.Fields(string(b))
	switch {
	case err != nil:
		o.err = "reading the answer: " + err.Error()
	case resp.StatusCode != 200:
		o.err = fmt.Sprintf("status %d: %.80q", resp.StatusCode, b)
	case len(f) != 2:
		o.err = fmt.Sprintf("unexpected answer %.80q", b)
	default:
		o.instance, o.version = f[0], f[1]
	}
	return o
}

func (l *lbLoad) record(o outcome) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.outcomes = append(l.outcomes, o)
	if o.err == "" {
		l.served[o.instance]++
	}
}

// servedBy reports how many answers came from instance so far.
func (l *lbLoad) servedBy(instance string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.served[instance]
}

// finish stops the clients, waits for their last requests, and returns
// every outcome. It may be called more than once.
func (l *lbLoad) finish() []outcome {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.outcomes
}

// tally counts outcomes.
type tally struct {
	sent, ok, failed int
	byInstance       map[string]int
	byVersion        map[string]int
	errors           []string // the first few
}

func tallyOf(outs []outcome, keep func(outcome) bool) tally {
	tl := tally{byInstance: map[string]int{}, byVersion: map[string]int{}}
	for _, o := range outs {
		if keep != nil && !keep(o) {
			continue
		}
		tl.sent++
		if o.err != "" {
			tl.failed++
			if len(tl.errors) < 5 {
				tl.errors = append(tl.errors, o.err)
			}
			continue
		}
		tl.ok++
		tl.byInstance[o.instance]++
		tl.byVersion[o.version]++
	}
	return tl
}

func (tl tally) String() string {
	return fmt.Sprintf("sent %d, succeeded %d, failed %d; by instance %s; by version %s",
		tl.sent, tl.ok, tl.failed, sortedCounts(tl.byInstance), sortedCounts(tl.byVersion))
}

func sortedCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// checkAccounting checks that every request sent is counted once, as a
// success or a failure, and every success once by instance and by version.
func checkAccounting(t *testing.T, l *lbLoad, outs []outcome) tally {
	t.Helper()
	tl := tallyOf(outs, nil)
	sum := func(m map[string]int) (n int) {
		for _, v := range m {
			n += v
		}
		return n
	}
	if int64(tl.sent) != l.sent.Load() || tl.ok+tl.failed != tl.sent || sum(tl.byInstance) != tl.ok || sum(tl.byVersion) != tl.ok {
		t.Errorf("%s: requests not all counted: %d sent by the clients, %s", l.name, l.sent.Load(), tl)
	}
	if l.inFlight.Load() != 0 {
		t.Errorf("%s: %d requests still in flight after the load ended", l.name, l.inFlight.Load())
	}
	return tl
}

// waitServing waits until every load has had n answers from instance:
// both balancers route to it.
func (c *scaleCluster) waitServing(instance string, n int, loads ...*lbLoad) {
	c.t.Helper()
	for _, l := range loads {
		if !pollUntil(10*time.Second, func() bool { return l.servedBy(instance) >= n }) {
			c.t.Fatalf("%s: %d answers from %s within 10s, want %d", l.name, l.servedBy(instance), instance, n)
		}
	}
}

// roll replaces h's instance with one serving release version, as a
// rolling restart does: SIGTERM, which turns /readyz 503 at once while the
// instance still serves for --drain-delay, so HAProxy takes it out before
// its listener closes; it drains and exits 0; the replacement starts and
// becomes ready, and both balancers route to it again.
func (c *scaleCluster) roll(h *scaleHost, version string, loads ...*lbLoad) {
	c.t.Helper()
	old, oldName := h.srv, h.instance
	began := time.Now()
	old.Signal(syscall.SIGTERM)
	if !pollUntil(5*time.Second, func() bool {
		code, _, err := probe(h.admin() + "/readyz")
		return err == nil && code == 503
	}) {
		c.t.Fatalf("%s: /readyz did not turn 503 after SIGTERM\n%s", oldName, old.Stderr())
	}
	down := c.waitHAProxy(h.name, "DOWN", 10*time.Second)
	select {
	case <-old.exited:
		c.t.Errorf("%s exited before HAProxy marked it DOWN: --drain-delay %ss did not hold the listener open", oldName, scaleDrainDelay)
	default:
	}
	if code := old.Wait(30 * time.Second); code != 0 {
		c.t.Fatalf("%s exited with %d after SIGTERM\n%s", oldName, code, old.Stderr())
	}
	exited := time.Now()
	c.launch(h, version)
	c.waitReady(h)
	ready := time.Now()
	c.waitHAProxy(h.name, "UP", 10*time.Second)
	c.waitServing(h.instance, 1, loads...)
	c.t.Logf("%s -> %s: HAProxy DOWN after %v, exited after %v, replacement ready after %v more, serving through both after %v more",
		oldName, h.instance, down.Sub(began).Round(time.Millisecond), exited.Sub(began).Round(time.Millisecond),
		ready.Sub(exited).Round(time.Millisecond), time.Since(ready).Round(time.Millisecond))
}

// stopAll stops every instance gracefully, all at once, so that their
// access logs are complete.
func (c *scaleCluster) stopAll() {
	c.t.Helper()
	var wg sync.WaitGroup
	codes := make([]int, len(c.hosts))
	for i, h := range c.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.srv.Signal(syscall.SIGTERM)
			codes[i] = h.srv.Wait(30 * time.Second)
		}()
	}
	wg.Wait()
	for i, h := range c.hosts {
		if codes[i] != 0 {
			c.t.Errorf("%s exited with %d after SIGTERM\n%s", h.instance, codes[i], h.srv.Stderr())
		}
	}
}

// logBalancerErrors logs what nginx and HAProxy reported as errors, which
// explains any failed request.
func (c *scaleCluster) logBalancerErrors() {
	c.t.Helper()
	var lines []string
	for _, line := range strings.Split(c.nginx.errorLog(), "\n") {
		if strings.Contains(line, "[error]") || strings.Contains(line, "[warn]") {
			lines = append(lines, "nginx: "+line)
		}
	}
	for _, line := range strings.Split(c.haproxy.output(), "\n") {
		if line != "" {
			lines = append(lines, "haproxy: "+line)
		}
	}
	c.t.Logf("the balancers' errors and events:\n%s", strings.Join(lines, "\n"))
}

// accessLogRequest matches the request line in taipan's access log.
var accessLogRequest = regexp.MustCompile(`"(GET|POST) (\S+) HTTP/1\.1"`)

// servedRequests reads every instance's access log: requests answered by
// instance, and how many times each POST target was answered.
func (c *scaleCluster) servedRequests() (gets map[string]int, posts map[string]int) {
	c.t.Helper()
	gets, posts = map[string]int{}, map[string]int{}
	for _, h := range c.hosts {
		for instance, path := range h.logs {
			f, err := os.Open(path)
			if err != nil {
				c.t.Fatal(err)
			}
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				m := accessLogRequest.FindStringSubmatch(sc.Text())
				switch {
				case m == nil:
				case m[1] == "GET" && m[2] == scaleGetPath:
					gets[instance]++
				case m[1] == "POST":
					posts[m[2]]++
				}
			}
			f.Close()
		}
	}
	return gets, posts
}

// nginxLog is nginx's log of the requests it proxied: one line per
// request, with every upstream it tried.
type nginxLogLine struct {
	at       time.Time
	method   string
	uri      string
	upstream string // "10.1.2.6:8000, 10.1.2.2:8000" after a retry
}

func (c *scaleCluster) nginxLog() []nginxLogLine {
	c.t.Helper()
	data, err := os.ReadFile(filepath.Join(c.nginx.dir, "upstream.log"))
	if err != nil {
		c.t.Fatal(err)
	}
	var lines []nginxLogLine
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.SplitN(line, " ", 5)
		if len(f) < 5 {
			continue
		}
		sec, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		up, _, _ := strings.Cut(strings.TrimPrefix(f[4], `"`), `"`)
		lines = append(lines, nginxLogLine{at: time.Unix(0, int64(sec*1e9)), method: f[1], uri: f[2], upstream: up})
	}
	return lines
}

// rollingLoads starts the counted GET load and a small stream of POSTs
// through both balancers.
func (c *scaleCluster) rollingLoads() (gets, posts []*lbLoad) {
	gets = []*lbLoad{
		startLBLoad(c.t, "nginx GET", "GET", c.nginxURL, scaleGetPath, 3),
		startLBLoad(c.t, "haproxy GET", "GET", c.haproxyURL, scaleGetPath, 3),
	}
	posts = []*lbLoad{
		startLBLoad(c.t, "nginx POST", "POST", c.nginxURL, "/order", 1),
		startLBLoad(c.t, "haproxy POST", "POST", c.haproxyURL, "/order", 1),
	}
	for _, h := range c.hosts {
		c.waitServing(h.instance, 10, gets...)
	}
	return gets, posts
}

// checkRolled ends the loads and the instances and checks that no GET
// failed and that every request is counted: by the clients, by nginx, and
// in the instances' own access logs. A POST may fail (a balancer does not
// retry one that reached a server) but must never run twice.
func (c *scaleCluster) checkRolled(gets, posts []*lbLoad) map[string]tally {
	c.t.Helper()
	tallies := map[string]tally{}
	clientByInstance := map[string]int{}
	nginxSent := 0
	for _, l := range gets {
		tl := checkAccounting(c.t, l, l.finish())
		tallies[l.name] = tl
		c.t.Logf("%s: %s", l.name, tl)
		if tl.failed != 0 {
			c.t.Errorf("%s: %d of %d requests failed, want 0; first errors: %q", l.name, tl.failed, tl.sent, tl.errors)
		}
		for k, v := range tl.byInstance {
			clientByInstance[k] += v
		}
		if strings.HasPrefix(l.name, "nginx") {
			nginxSent += tl.sent
		}
	}
	postOutcomes := map[string]outcome{}
	for _, l := range posts {
		outs := l.finish()
		tl := checkAccounting(c.t, l, outs)
		tallies[l.name] = tl
		c.t.Logf("%s: %s; errors %q", l.name, tl, tl.errors)
		for _, o := range outs {
			postOutcomes[o.id] = o
		}
	}
	c.stopAll()
	c.logBalancerErrors()

	served, postsServed := c.servedRequests()
	if fmt.Sprint(served) != fmt.Sprint(clientByInstance) {
		c.t.Errorf("GETs answered, by instance: access logs %v, clients %v", served, clientByInstance)
	}
	for id, o := range postOutcomes {
		n := postsServed[id]
		switch {
		case n > 1:
			c.t.Errorf("POST %s ran %d times", id, n)
		case o.err == "" && n != 1:
			c.t.Errorf("POST %s succeeded at the client but is in no access log", id)
		}
	}
	if len(postsServed) > len(postOutcomes) {
		c.t.Errorf("%d POSTs in the access logs, %d sent", len(postsServed), len(postOutcomes))
	}
	nginxLogged := 0
	for _, line := range c.nginxLog() {
		if line.method == "GET" && line.uri == scaleGetPath {
			nginxLogged++
		}
	}
	if nginxLogged != nginxSent {
		c.t.Errorf("nginx logged %d GETs, the clients sent %d", nginxLogged, nginxSent)
	}
	return tallies
}

// TestScaleOutRollingRestart restarts the three instances one after the
// other (SIGTERM, drain, replacement, /readyz 200, next) under load through
// nginx and HAProxy: no GET fails, and every request is counted.
func TestScaleOutRollingRestart(t *testing.T) {
	c := newScaleCluster(t, "v1")
	gets, posts := c.rollingLoads()
	for _, h := range c.hosts {
		c.roll(h, "v1", gets...)
	}
	tallies := c.checkRolled(gets, posts)
	for _, name := range []string{"nginx GET", "haproxy GET"} {
		for _, h := range c.hosts {
			if n := tallies[name].byInstance[h.instance]; n == 0 {
				t.Errorf("%s: no answer from the replacement %s", name, h.instance)
			}
		}
	}
}

// TestScaleOutRollingUpgrade rolls the instances onto a new release of the
// app (a new code directory): no GET fails, every request is counted, and
// once the last old instance has exited every answer is the new version.
func TestScaleOutRollingUpgrade(t *testing.T) {
	c := newScaleCluster(t, "v1")
	gets, posts := c.rollingLoads()
	for _, h := range c.hosts {
		c.roll(h, "v2", gets...)
	}
	upgraded := time.Now() // the last v1 instance has exited
	time.Sleep(300 * time.Millisecond)
	tallies := c.checkRolled(gets, posts)
	for _, l := range gets {
		tl := tallies[l.name]
		if tl.byVersion["v1"] == 0 || tl.byVersion["v2"] == 0 {
			t.Errorf("%s: answers by version %v, want both releases", l.name, tl.byVersion)
		}
		after := tallyOf(l.finish(), func(o outcome) bool { return o.start.After(upgraded) })
		t.Logf("%s after the upgrade: %s", l.name, after)
		if after.ok == 0 || after.byVersion["v2"] != after.ok {
			t.Errorf("%s after the upgrade: %s; want every answer from v2", l.name, after)
		}
	}
}

// TestScaleOutKill kills one instance with SIGKILL under load: only the
// requests in flight may fail, nginx takes the server out (passive checks:
// it tries it about once per fail_timeout), HAProxy marks it DOWN by its
// active check, and no request through HAProxy fails after that.
func TestScaleOutKill(t *testing.T) {
	c := newScaleCluster(t, "v1")
	// Longer requests than in the rolling tests, so that some are in
	// flight on the victim when it dies.
	const path = "/work?ms=100"
	nginxLoad := startLBLoad(t, "nginx GET", "GET", c.nginxURL, path, 3)
	haproxyLoad := startLBLoad(t, "haproxy GET", "GET", c.haproxyURL, path, 3)
	for _, h := range c.hosts {
		c.waitServing(h.instance, 5, nginxLoad, haproxyLoad)
	}

	victim := c.hosts[1]
	workers := victim.srv.WorkerPids()
	t.Cleanup(func() {
		for _, pid := range workers {
			if pidAlive(pid) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	// Kill it while it runs requests: its /status.json counts them. The
	// clients' own count of requests in flight anywhere, before and after
	// the kill, bounds the failures.
	victimInFlight := 0
	if !pollUntil(5*time.Second, func() bool {
		var st struct {
			InFlight int `json:"in_flight"`
		}
		_, body, err := probe(victim.admin() + "/status.json")
		if err == nil && json.Unmarshal([]byte(body), &st) == nil {
			victimInFlight = st.InFlight
		}
		return victimInFlight > 0
	}) {
		t.Fatalf("%s never had a request in flight", victim.instance)
	}
	nginxInFlight, haproxyInFlight := nginxLoad.inFlight.Load(), haproxyLoad.inFlight.Load()
	killed := time.Now()
	if err := syscall.Kill(victim.srv.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	nginxInFlight += nginxLoad.inFlight.Load()
	haproxyInFlight += haproxyLoad.inFlight.Load()
	if code := victim.srv.Wait(10 * time.Second); code != -1 || !strings.Contains(fmt.Sprint(victim.srv.err), "killed") {
		t.Fatalf("%s after SIGKILL: exit %d, %v", victim.instance, code, victim.srv.err)
	}
	detected := c.waitHAProxy(victim.name, "DOWN", 10*time.Second)
	t.Logf("%s killed with %d requests in flight on it; HAProxy marked it DOWN %v later",
		victim.instance, victimInFlight, detected.Sub(killed).Round(time.Millisecond))
	if !pollUntil(10*time.Second, func() bool {
		return strings.Contains(c.nginx.errorLog(), "upstream server temporarily disabled")
	}) {
		t.Errorf("nginx did not log taking %s out:\n%s", victim.addr(), c.nginx.errorLog())
	}
	// Traffic after detection, on the two instances left.
	time.Sleep(1500 * time.Millisecond)
	ended := time.Now()
	nginxOuts, haproxyOuts := nginxLoad.finish(), haproxyLoad.finish()
	c.logBalancerErrors()

	for _, run := range []struct {
		l        *lbLoad
		outs     []outcome
		inFlight int64
	}{{nginxLoad, nginxOuts, nginxInFlight}, {haproxyLoad, haproxyOuts, haproxyInFlight}} {
		tl := checkAccounting(t, run.l, run.outs)
		t.Logf("%s: %s; in flight at the kill: at most %d; errors %q", run.l.name, tl, run.inFlight, tl.errors)
		if int64(tl.failed) > run.inFlight {
			t.Errorf("%s: %d requests failed, more than the %d in flight at the kill: %q", run.l.name, tl.failed, run.inFlight, tl.errors)
		}
		after := tallyOf(run.outs, func(o outcome) bool { return o.start.After(killed) })
		t.Logf("%s after the kill: %s", run.l.name, after)
		if after.byInstance[victim.instance] != 0 {
			t.Errorf("%s: %d answers from the killed %s", run.l.name, after.byInstance[victim.instance], victim.instance)
		}
		for _, h := range c.hosts {
			if h != victim && after.byInstance[h.instance] == 0 {
				t.Errorf("%s: no answer from %s after the kill", run.l.name, h.instance)
			}
		}
	}
	afterDetection := tallyOf(haproxyOuts, func(o outcome) bool { return o.start.After(detected) })
	t.Logf("haproxy GET after HAProxy marked it DOWN: %s", afterDetection)
	if afterDetection.failed != 0 || afterDetection.ok == 0 {
		t.Errorf("haproxy GET after detection: %s; want no failure; errors %q", afterDetection, afterDetection.errors)
	}

	// nginx tried the dead server about once per fail_timeout, not for a
	// third of the requests as it would without max_fails.
	attempts, proxied := 0, 0
	for _, line := range c.nginxLog() {
		if line.at.Before(killed) {
			continue
		}
		proxied++
		if strings.Contains(line.upstream, victim.addr()) {
			attempts++
		}
	}
	window := ended.Sub(killed)
	limit := int(nginxInFlight) + int(window/nginxFailTimeout) + 2
	t.Logf("nginx: %d requests after the kill, %d of them tried the dead %s (limit %d over %v)", proxied, attempts, victim.addr(), limit, window.Round(time.Millisecond))
	if attempts > limit {
		t.Errorf("nginx tried the dead server %d times in %v, more than %d: max_fails did not take it out", attempts, window.Round(time.Millisecond), limit)
	}

	if !pollUntil(5*time.Second, func() bool {
		for _, pid := range workers {
			if pidAlive(pid) {
				return false
			}
		}
		return true
	}) {
		t.Errorf("workers %v of the killed taipan are still alive", workers)
	}
}

// TestDrainDelay: after SIGTERM with --drain-delay, /readyz answers 503 at
// once while the client listener keeps accepting and serving new
// connections for the delay; then taipan drains and exits 0.
func TestDrainDelay(t *testing.T) {
	adminAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	admin := "http://" + adminAddr
	s := Start(t, "--metrics-bind", adminAddr, "-w", "1", "--drain-delay", "3",
		"--chdir", scaleCodeDir(t, "v1"), "scaleapp:app")
	if !pollUntil(30*time.Second, func() bool { code, _, err := probe(admin + "/readyz"); return err == nil && code == 200 }) {
		t.Fatalf("/readyz not 200\n%s", s.Stderr())
	}
	s.Signal(syscall.SIGTERM)
	var code int
	var body string
	if !pollUntil(5*time.Second, func() bool { code, body, _ = probe(admin + "/readyz"); return code == 503 }) {
		t.Fatalf("/readyz after SIGTERM: %d %q, want 503", code, body)
	}
	if !strings.Contains(body, "draining") {
		t.Errorf("/readyz body %q, want the reason", body)
	}
	if code, _, err := probe(admin + "/healthz"); err != nil || code != 200 {
		t.Errorf("/healthz during the drain delay: %d %v, want 200", code, err)
	}
	// New connections are still accepted and served.
	for i := 0; i < 5; i++ {
		code, body, err := probe(s.URL + "/work")
		if err != nil || code != 200 || !strings.Contains(body, "v1") {
			t.Fatalf("request %d during the drain delay: %d %q %v\n%s", i, code, body, err, s.Stderr())
		}
	}
	if !strings.Contains(s.Stderr(), "--drain-delay") {
		t.Errorf("the error log does not mention the drain delay:\n%s", s.Stderr())
	}
	select {
	case <-s.exited:
		t.Fatalf("taipan exited during its drain delay:\n%s", s.Stderr())
	default:
	}
	if code := s.Wait(20 * time.Second); code != 0 {
		t.Fatalf("exit code %d after the drain delay, want 0\n%s", code, s.Stderr())
	}
	if _, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
		t.Errorf("%s still accepts after taipan exited", s.Addr)
	}
	log := s.Stderr()
	if i, j := strings.Index(log, "--drain-delay"), strings.Index(log, "Finishing in-flight"); i < 0 || j < i {
		t.Errorf("the graceful drain did not follow the delay:\n%s", log)
	}
}

// TestDrainDelaySecondSignal: a second SIGTERM during --drain-delay skips
// the rest of it; taipan drains and exits 0 long before the delay would
// have ended.
func TestDrainDelaySecondSignal(t *testing.T) {
	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := Start(t, "--metrics-bind", admin, "-w", "1", "--drain-delay", "600",
		"--chdir", scaleCodeDir(t, "v1"), "scaleapp:app")
	if !pollUntil(30*time.Second, func() bool { code, _, err := probe("http://" + admin + "/readyz"); return err == nil && code == 200 }) {
		t.Fatalf("/readyz not 200\n%s", s.Stderr())
	}
	s.Signal(syscall.SIGTERM)
	if !s.WaitLog("--drain-delay", 5*time.Second) {
		t.Fatalf("no drain delay after SIGTERM:\n%s", s.Stderr())
	}
	if code, body, err := probe(s.URL + "/work"); err != nil || code != 200 {
		t.Fatalf("request during the drain delay: %d %q %v", code, body, err)
	}
	s.Signal(syscall.SIGTERM)
	if code := s.Wait(20 * time.Second); code != 0 {
		t.Fatalf("after a second SIGTERM: exit code %d, want 0 well within the 600 s delay\n%s", code, s.Stderr())
	}
	if !strings.Contains(s.Stderr(), "ending the drain delay") {
		t.Errorf("the second SIGTERM is not logged:\n%s", s.Stderr())
	}
}
