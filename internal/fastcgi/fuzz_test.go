package fastcgi

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"taipan/internal/cgivars"
	"taipan/internal/cgivars/cgivarstest"
)

// splitRecords cuts b into the complete records it starts with, as the
// FastCGI 1.0 specification frames them (version 1, type, big-endian
// request id and content length, padding length, reserved byte, content,
// padding), and returns what follows them.
func splitRecords(b []byte) (recs []rec, rest []byte) {
	for len(b) >= headerLen && b[0] == version1 {
		n, pad := int(b[4])<<8|int(b[5]), int(b[6])
		if len(b) < headerLen+n+pad {
			break
		}
		recs = append(recs, rec{typ: b[1], id: uint16(b[2])<<8 | uint16(b[3]), content: b[headerLen : headerLen+n]})
		b = b[headerLen+n+pad:]
	}
	return recs, b
}

// refPairLen decodes a name-value pair length as the specification has
// it: one byte with the high bit clear, or four big-endian bytes with it
// set, which is not part of the length.
func refPairLen(b []byte) (n, size int, ok bool) {
	switch {
	case len(b) == 0:
		return 0, 0, false
	case b[0] < 0x80:
		return int(b[0]), 1, true
	case len(b) < 4:
		return 0, 0, false
	}
	return int(b[0]&0x7f)<<24 | int(b[1])<<16 | int(b[2])<<8 | int(b[3]), 4, true
}

// checkPairs decodes the name-value pairs of p with nextPair, under
// limit, and checks each step against refPairLen.
func checkPairs(t *testing.T, p []byte, limit int) {
	for len(p) > 0 {
		name, value, rest, complete, err := nextPair(p, limit)
		nlen, n1, ok1 := refPairLen(p)
		vlen, n2, ok2 := 0, 0, false
		if ok1 {
			vlen, n2, ok2 = refPairLen(p[n1:])
		}
		switch {
		case !ok1 || !ok2:
			if err != nil || complete {
				t.Fatalf("pair lengths cut short in %q: complete %v, err %v", p, complete, err)
			}
			return
		case nlen+vlen > limit:
			if !errors.Is(err, cgivars.ErrVarTooLarge) {
				t.Fatalf("pair of %d+%d bytes over the limit %d: err %v", nlen, vlen, limit, err)
			}
			return
		case len(p) < n1+n2+nlen+vlen:
			if err != nil || complete || !bytes.Equal(rest, p) {
				t.Fatalf("pair of %d+%d bytes in %d: complete %v, err %v", nlen, vlen, len(p), complete, err)
			}
			return
		}
		start := n1 + n2
		if err != nil || !complete || !bytes.Equal(name, p[start:start+nlen]) ||
			!bytes.Equal(value, p[start+nlen:start+nlen+vlen]) || !bytes.Equal(rest, p[start+nlen+vlen:]) {
			t.Fatalf("pair in %q: name %q, value %q, complete %v, err %v; want %d+%d bytes from offset %d",
				p, name, value, complete, err, nlen, vlen, start)
		}
		p = rest
	}
}

// stdinBodies is, for each BEGIN_REQUEST of a RESPONDER in recs, the body
// its STDIN records carry: the body a Handler may be given for it.
func stdinBodies(recs []rec) [][]byte {
	var bodies [][]byte
	for i, r := range recs {
		if r.typ != typeBeginRequest || len(r.content) < 8 || r.content[0] != 0 || r.content[1] != roleResponder {
			continue
		}
		body := []byte{}
		for _, s := range recs[i+1:] {
			if s.id != r.id || s.typ != typeStdin {
				continue
			}
			if len(s.content) == 0 {
				break
			}
			body = append(body, s.content...)
		}
		bodies = append(bodies, body)
	}
	return bodies
}

// unpadded is b with the records it starts with framed again without
// padding, and what follows them as it was.
func unpadded(b []byte) []byte {
	recs, rest := splitRecords(b)
	var out []byte
	for _, r := range recs {
		out = append(out, version1, r.typ, byte(r.id>>8), byte(r.id), byte(len(r.content)>>8), byte(len(r.content)), 0, 0)
		out = append(out, r.content...)
	}
	return append(out, rest...)
}

// summary is what an answer says, without the bytes that change from one
// exchange to the next (the Date header): its records' types and ids, and
// the content of END_REQUEST records.
func summary(out []byte) string {
	recs, rest := splitRecords(out)
	var b bytes.Buffer
	for _, r := range recs {
		fmt.Fprintf(&b, "%d/%d ", r.typ, r.id)
		if r.typ == typeEndRequest {
			fmt.Fprintf(&b, "%x ", r.content)
		}
	}
	fmt.Fprintf(&b, "+%d", len(rest))
	return b.String()
}

// FuzzRecords sends arbitrary bytes to a real Server as nginx's
// fastcgi_pass would send records, and checks the outcome against a
// reading of the FastCGI 1.0 specification: the answer is a stream of
// whole version 1 records of the types a responder sends, for request ids
// the input began (management answers for id 0); a request is served only
// for a RESPONDER BEGIN_REQUEST, with the body its STDIN records carry,
// and ends with END_REQUEST; the name-value pairs of every PARAMS and
// GET_VALUES record decode with 1- and 4-byte lengths as the
// specification has them; the server answers or closes promptly; and no
// length in the input makes it allocate more than a few times what was
// sent. Padding changes nothing: the same records sent without it are
// served and answered alike.
func FuzzRecords(f *testing.F) {
	fs := cgivarstest.StartFuzzServer(f, newServer)
	// Small seeds: the fuzzer minimizes every input that finds new
	// coverage, and a long one costs it seconds.
	vars := func(method string, extra ...[2]string) [][2]string {
		return append([][2]string{{"REQUEST_METHOD", method}, {"REQUEST_URI", "/"}}, extra...)
	}
	f.Add(requestBytes(1, 0, vars("GET"), nil))
	f.Add(append(requestBytes(1, flagKeepConn, vars("POST", [2]string{"CONTENT_LENGTH", "5"}), []byte("hello")),
		requestBytes(2, 0, vars("GET"), nil)...))
	f.Add(requestBytes(7, 0, vars("GET", [2]string{"HTTP_X_LONG", string(bytes.Repeat([]byte("v"), 130))}), nil))
	f.Add(appendRecord(nil, typeGetValues, 0, encodePairs([][2]string{{"FCGI_MAX_CONNS", ""}, {"FCGI_MPXS_CONNS", ""}})))
	var abort []byte
	abort = appendRecord(abort, typeBeginRequest, 3, beginContent(roleResponder, 0))
	abort = appendRecord(abort, typeParams, 3, []byte{0x80, 0xff, 0xff, 0xff, 1})
	abort = appendRecord(abort, typeAbortRequest, 3, nil)
	f.Add(abort)
	f.Add([]byte{1, typeBeginRequest, 0, 1, 0xff, 0xff, 0xff, 0})
	f.Fuzz(func(t *testing.T, raw []byte) {
		out, seen, allocated := fs.Exchange(t, raw)
		if limit := cgivarstest.FuzzAllocSlack + 4*uint64(len(raw)); allocated > limit {
			t.Errorf("one exchange of %d bytes allocated %d bytes (limit %d)", len(raw), allocated, limit)
		}
		in, _ := splitRecords(raw)
		began := map[uint16]bool{}
		for _, r := range in {
			switch {
			case r.typ == typeBeginRequest:
				began[r.id] = true
			case r.typ == typeParams:
				checkPairs(t, r.content, 300)
			case r.typ == typeGetValues && r.id == 0:
				checkPairs(t, r.content, maxContent)
			}
		}

		answer, rest := splitRecords(out)
		if len(rest) != 0 {
			t.Fatalf("the answer ends in %d bytes that are not a whole record: %q", len(rest), rest)
		}
		completed := 0
		for _, r := range answer {
			switch r.typ {
			case typeStdout, typeEndRequest:
				if r.id == 0 || !began[r.id] {
					t.Fatalf("record type %d for request %d, which the input never began", r.typ, r.id)
				}
				if r.typ == typeEndRequest {
					if len(r.content) != 8 {
						t.Fatalf("END_REQUEST of %d bytes", len(r.content))
					}
					if r.content[4] == statusRequestComplete {
						completed++
					}
				}
			case typeGetValuesResult, typeUnknownType:
				if r.id != 0 {
					t.Fatalf("management record type %d for request %d", r.typ, r.id)
				}
				if r.typ == typeGetValuesResult {
					checkPairs(t, r.content, maxContent)
				}
			default:
				t.Fatalf("the server sent a record of type %d", r.typ)
			}
		}

		// Padding carries nothing: the same records without it must be
		// served and answered alike.
		out2, seen2, _ := fs.Exchange(t, unpadded(raw))
		if summary(out2) != summary(out) || fmt.Sprint(seen2) != fmt.Sprint(seen) {
			t.Fatalf("without padding, the answer is %s and served %q; with it, %s and %q", summary(out2), seen2, summary(out), seen)
		}

		bodies := stdinBodies(in)
		if len(seen) > len(bodies) {
			t.Fatalf("served %d requests for %d RESPONDER BEGIN_REQUESTs", len(seen), len(bodies))
		}
		if completed < len(seen) {
			t.Fatalf("served %d requests, but only %d END_REQUESTs", len(seen), completed)
		}
		for _, s := range seen {
			found := false
			for _, b := range bodies {
				found = found || bytes.Equal(s.Body, b)
			}
			if !found {
				t.Fatalf("served body %q, which no request's STDIN records carry", s.Body)
			}
		}
	})
}
