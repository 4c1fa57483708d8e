package static

import (
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// siblingTTL is how long a lookup of a file's precompressed siblings is
// trusted: a .br or .gz added or removed beside an unchanged file is
// noticed within this time (a changed file is looked at again at once).
const siblingTTL = time.Second

// maxMetaEntries bounds a mount's metadata memo; when it is full it starts
// over, which is cheap and keeps a scan of many distinct names from growing
// it.
const maxMetaEntries = 8192

// fileMeta is what a response for one file derives from the file's name
// and stat: its header values, formatted once rather than on every
// request, and which precompressed siblings it has.
type fileMeta struct {
	// From the file's stat; the rest is valid only while these match.
	modTime time.Time
	size    int64

	etag          string    // per makeETag, with the coding's tag
	lastModified  string    // modTime as an HTTP-date
	lastModSecond time.Time // modTime in whole seconds, for comparisons
	contentLength string    // size
	contentType   string    // from the name (of the original, for a sibling)
	cacheControl  string    // from the name

	// For a file as it is (not a sibling): bit i set when codings[i] has a
	// usable sibling, as found at siblingsAt.
	siblings   uint8
	siblingsAt time.Time
}

// metaKey names a representation: a file, or (coding >= 0) its sibling
// in codings[coding], which has its own stat and ETag but the file's
// Content-Type.
type metaKey struct {
	name   string
	coding int
}

// identity is the coding index of a file as it is.
const identity = -1

// metaCache memoizes fileMeta per representation for a mount. Everything
// but the sibling set is a pure function of the name and of a stat that
// every request takes afresh (and compares), so it cannot go stale; the
// sibling set, which depends on other files, is trusted for siblingTTL.
// Entries are never modified once stored, only replaced, so a reader may
// keep one without a lock.
type metaCache struct {
	mu      sync.RWMutex
	entries map[metaKey]*fileMeta
}

// lookup returns the memo for key if it was made for a file with this
// modification time and size.
func (c *metaCache) lookup(key metaKey, modTime time.Time, size int64) *fileMeta {
	c.mu.RLock()
	m := c.entries[key]
	c.mu.RUnlock()
	if m == nil || m.size != size || !m.modTime.Equal(modTime) {
		return nil
	}
	return m
}

// store remembers m for key. The key's name may point into a request's
// buffer, so it is copied.
func (c *metaCache) store(key metaKey, m *fileMeta) {
	key.name = strings.Clone(key.name)
	c.mu.Lock()
	if c.entries == nil || len(c.entries) >= maxMetaEntries {
		c.entries = make(map[metaKey]*fileMeta)
	}
	c.entries[key] = m
	c.mu.Unlock()
}

// meta returns the fileMeta of name (in coding cd, identity for the file
// itself) whose stat is fi, from the memo or made afresh.
func (mt *mount) meta(name string, cd int, fi os.FileInfo) *fileMeta {
	key := metaKey{name: name, coding: cd}
	if m := mt.memo.lookup(key, fi.ModTime(), fi.Size()); m != nil {
		return m
	}
	tag := ""
	if cd != identity {
		tag = codings[cd].tag
	}
	mod := fi.ModTime()
	sec := mod.Truncate(time.Second)
	m := &fileMeta{
		modTime:       mod,
		size:          fi.Size(),
		etag:          makeETag(mod, fi.Size(), tag),
		lastModified:  sec.UTC().Format(http.TimeFormat),
		lastModSecond: sec,
		contentLength: strconv.FormatInt(fi.Size(), 10),
		contentType:   contentType(name),
		cacheControl:  cacheControl(name),
	}
	mt.memo.store(key, m)
	return m
}

// usableSiblings returns the set of codings (bit i for codings[i]) for
// which the file name, whose memo is m, has a sibling that is a regular
// file no older than itself. Without the memo every request would pay one
// failed lookup per coding (as costly as opening the file), mostly to
// learn that there is none. It only decides what to try: a sibling is
// still opened and checked before it is sent.
func (mt *mount) usableSiblings(name string, m *fileMeta) uint8 {
	now := time.Now()
	if !m.siblingsAt.IsZero() && now.Sub(m.siblingsAt) < siblingTTL {
		return m.siblings
	}
	var bits uint8
	for i, cd := range codings {
		fi, err := mt.root.Stat(name + cd.suffix)
		if err == nil && fi.Mode().IsRegular() && !fi.ModTime().Before(m.modTime) {
			bits |= 1 << i
		}
	}
	updated := *m
	updated.siblings, updated.siblingsAt = bits, now
	mt.memo.store(metaKey{name: name, coding: identity}, &updated)
	return bits
}
