package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Python marshal type codes used here (CPython Python/marshal.c).
const (
	mNull       = '0'
	mNone       = 'N'
	mFalse      = 'F'
	mTrue       = 'T'
	mInt        = 'i'
	mString     = 's' // bytes
	mUnicode    = 'u'
	mASCII      = 'a'
	mASCIIInt   = 'A'
	mShortASCII = 'z'
	mShortInt   = 'Z'
	mInterned   = 't'
	mTuple      = '('
	mSmallTuple = ')'
	mList       = '['
	mDict       = '{'
	mRef        = 'r'
	flagRef     = 0x80
)

// EnvironEncoder builds a marshal dict of str keys and str values, the
// environ of a REQUEST frame. Strings are "bytes as str": every byte becomes
// one code point (latin-1), as PEP 3333 wants for native strings.
type EnvironEncoder struct {
	buf []byte
}

// Reset starts a new dict, reusing the buffer.
func (e *EnvironEncoder) Reset() {
	e.buf = append(e.buf[:0], mDict)
}

// Add appends one key/value pair.
func (e *EnvironEncoder) Add(key, value string) {
	e.buf = appendLatin1(e.buf, key)
	e.buf = appendLatin1(e.buf, value)
}

// AddHTTP appends the CGI form of a request header: the key is "HTTP_"
// followed by name upper-cased with '-' mapped to '_'. name must be ASCII
// (header names are tokens).
func (e *EnvironEncoder) AddHTTP(name, value string) {
	n := 5 + len(name)
	if n < 256 {
		e.buf = append(e.buf, mShortASCII, byte(n))
	} else {
		e.buf = append(e.buf, mASCII)
		e.buf = binary.LittleEndian.AppendUint32(e.buf, uint32(n))
	}
	e.buf = append(e.buf, "HTTP_"...)
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '-':
			c = '_'
		case 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		}
		e.buf = append(e.buf, c)
	}
	e.buf = appendLatin1(e.buf, value)
}

// AddBool appends a pair whose value is True or False.
func (e *EnvironEncoder) AddBool(key string, v bool) {
	e.buf = appendLatin1(e.buf, key)
	if v {
		e.buf = append(e.buf, mTrue)
	} else {
		e.buf = append(e.buf, mFalse)
	}
}

// AddIntPair appends a pair whose value is a tuple of two ints, such as
// wsgi.version.
func (e *EnvironEncoder) AddIntPair(key string, a, b int32) {
	e.buf = appendLatin1(e.buf, key)
	e.buf = append(e.buf, mSmallTuple, 2, mInt)
	e.buf = binary.LittleEndian.AppendUint32(e.buf, uint32(a))
	e.buf = append(e.buf, mInt)
	e.buf = binary.LittleEndian.AppendUint32(e.buf, uint32(b))
}

// Pairs returns the pairs added since Reset, without the dict markers, for
// AddPairs to copy into other environs.
func (e *EnvironEncoder) Pairs() []byte {
	return append([]byte(nil), e.buf[1:]...)
}

// AddPairs appends pairs produced by Pairs.
func (e *EnvironEncoder) AddPairs(pairs []byte) {
	e.buf = append(e.buf, pairs...)
}

// AddBytes appends one pair whose value is given as bytes.
func (e *EnvironEncoder) AddBytes(key string, value []byte) {
	e.buf = appendLatin1(e.buf, key)
	e.buf = appendLatin1(e.buf, value)
}

// Bytes terminates the dict and returns the encoding. The slice is valid
// until the next Reset.
func (e *EnvironEncoder) Bytes() []byte {
	return append(e.buf, mNull)
}

func isASCII[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// appendLatin1 writes s as a str: TYPE_SHORT_ASCII or TYPE_ASCII when it is
// ASCII, else TYPE_UNICODE.
func appendLatin1[T string | []byte](dst []byte, s T) []byte {
	if !isASCII(s) {
		return appendLatin1Unicode(dst, s)
	}
	if len(s) < 256 {
		dst = append(dst, mShortASCII, byte(len(s)))
	} else {
		dst = append(dst, mASCII)
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(s)))
	}
	return append(dst, s...)
}

// appendLatin1Unicode writes TYPE_UNICODE: the UTF-8 encoding of the
// latin-1 decoding of s (each byte >= 0x80 becomes two UTF-8 bytes).
func appendLatin1Unicode[T string | []byte](dst []byte, s T) []byte {
	n := len(s)
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			n++
		}
	}
	dst = append(dst, mUnicode)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(n))
	for i := 0; i < len(s); i++ {
		dst = utf8.AppendRune(dst, rune(s[i]))
	}
	return dst
}

// Value is a decoded marshal value: string, []byte, int64, bool, nil,
// []Value (tuple or list).
type Value = any

// Unmarshal decodes one marshal value of the supported subset: None, bools,
// 32-bit ints, bytes, all str encodings, tuples and lists, with
// back-references. It returns the value and the number of bytes consumed.
func Unmarshal(b []byte) (Value, int, error) {
	d := decoder{b: b}
	v, err := d.value(0)
	return v, d.off, err
}

type decoder struct {
	b    []byte
	off  int
	refs []Value
}

var errShort = errors.New("marshal: truncated data")

func (d *decoder) u32() (uint32, error) {
	if d.off+4 > len(d.b) {
		return 0, errShort
	}
	v := binary.LittleEndian.Uint32(d.b[d.off:])
	d.off += 4
	return v, nil
}

func (d *decoder) take(n int) ([]byte, error) {
	if n < 0 || d.off+n > len(d.b) {
		return nil, errShort
	}
	s := d.b[d.off : d.off+n]
	d.off += n
	return s, nil
}

func (d *decoder) value(depth int) (Value, error) {
	if depth > 16 {
		return nil, errors.New("marshal: nested too deep")
	}
	if d.off >= len(d.b) {
		return nil, errShort
	}
	code := d.b[d.off]
	d.off++
	ref := code&flagRef != 0
	code &^= flagRef
	refIndex := -1
	if ref {
		// Reserve the slot now: containers are registered before their items.
		refIndex = len(d.refs)
		d.refs = append(d.refs, nil)
	}
	var v Value
	switch code {
	case mNone:
		v = nil
	case mTrue:
		v = true
	case mFalse:
		v = false
	case mInt:
		n, err := d.u32()
		if err != nil {
			return nil, err
		}
		v = int64(int32(n))
	case mString:
		n, err := d.u32()
		if err != nil {
			return nil, err
		}
		s, err := d.take(int(n))
		if err != nil {
			return nil, err
		}
		v = append([]byte(nil), s...)
	case mUnicode, mInterned, mASCII, mASCIIInt:
		n, err := d.u32()
		if err != nil {
			return nil, err
		}
		s, err := d.take(int(n))
		if err != nil {
			return nil, err
		}
		v = string(s)
	case mShortASCII, mShortInt:
		if d.off >= len(d.b) {
			return nil, errShort
		}
		n := int(d.b[d.off])
		d.off++
		s, err := d.take(n)
		if err != nil {
			return nil, err
		}
		v = string(s)
	case mTuple, mList, mSmallTuple:
		var n int
		if code == mSmallTuple {
			if d.off >= len(d.b) {
				return nil, errShort
			}
			n = int(d.b[d.off])
			d.off++
		} else {
			u, err := d.u32()
			if err != nil {
				return nil, err
			}
			n = int(u)
		}
		if n > len(d.b)-d.off {
			return nil, errShort
		}
		items := make([]Value, n)
		if ref {
			d.refs[refIndex] = items
		}
		for i := range items {
			item, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			items[i] = item
		}
		v = items
	case mRef:
		n, err := d.u32()
		if err != nil {
			return nil, err
		}
		if int(n) >= len(d.refs) {
			return nil, fmt.Errorf("marshal: bad back-reference %d", n)
		}
		return d.refs[n], nil
	default:
		return nil, fmt.Errorf("marshal: unsupported type code %q", code)
	}
	if ref {
		d.refs[refIndex] = v
	}
	return v, nil
}

// The methods below add the value types of an ASGI scope, which Go encodes
// whole so that the worker only adds the objects ("asgi", "state").

// AddUTF8 appends a pair whose value is the str that value spells in UTF-8
// (value must be valid UTF-8).
func (e *EnvironEncoder) AddUTF8(key, value string) {
	e.buf = appendLatin1(e.buf, key)
	e.buf = appendUTF8(e.buf, value)
}

// AddBytesValue appends a pair whose value is a bytes object.
func (e *EnvironEncoder) AddBytesValue(key string, value []byte) {
	e.buf = appendLatin1(e.buf, key)
	e.buf = appendBytes(e.buf, value)
}

// AddNone appends a pair whose value is None.
func (e *EnvironEncoder) AddNone(key string) {
	e.buf = appendLatin1(e.buf, key)
	e.buf = append(e.buf, mNone)
}

// AddHostPort appends a pair whose value is the tuple (host, port).
func (e *EnvironEncoder) AddHostPort(key, host string, port int32) {
	e.buf = appendLatin1(e.buf, key)
	e.buf = append(e.buf, mSmallTuple, 2)
	e.buf = appendLatin1(e.buf, host)
	e.buf = append(e.buf, mInt)
	e.buf = binary.LittleEndian.AppendUint32(e.buf, uint32(port))
}

// BeginList starts a pair whose value is a list; items follow, and EndList
// writes their count.
func (e *EnvironEncoder) BeginList(key string) (mark int) {
	e.buf = appendLatin1(e.buf, key)
	e.buf = append(e.buf, mList, 0, 0, 0, 0)
	return len(e.buf) - 4
}

// EndList records that the list begun at mark has n items.
func (e *EnvironEncoder) EndList(mark, n int) {
	binary.LittleEndian.PutUint32(e.buf[mark:], uint32(n))
}

// AppendHeaderItem appends a list item (name, value) of two bytes objects,
// with name lower-cased: an ASGI header.
func (e *EnvironEncoder) AppendHeaderItem(name, value string) {
	e.buf = append(e.buf, mSmallTuple, 2, mString)
	e.buf = binary.LittleEndian.AppendUint32(e.buf, uint32(len(name)))
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		e.buf = append(e.buf, c)
	}
	e.buf = appendBytes(e.buf, value)
}

// AppendStrItem appends a list item that is a str given as UTF-8.
func (e *EnvironEncoder) AppendStrItem(s string) {
	e.buf = appendUTF8(e.buf, s)
}

// appendBytes writes s as a bytes object.
func appendBytes[T string | []byte](dst []byte, s T) []byte {
	dst = append(dst, mString)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}

// appendUTF8 writes s, valid UTF-8, as a str.
func appendUTF8(dst []byte, s string) []byte {
	if isASCII(s) {
		return appendLatin1(dst, s)
	}
	dst = append(dst, mUnicode)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}
