package api

import (
	"container/list"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"sync"
	"time"
)

// tokenBytes is the entropy of an access token.
const tokenBytes = 32

// tokenStore keeps the access tokens POST /api/login issued, each for a
// bounded lifetime, at most max of them: past that the least recently used
// goes, so that logins in a loop cannot grow the process.
//
// Tokens live in this process only: a client that logs in on one process
// uses its token with that process (a standby that accepts it forwards the
// write to the leader with the cluster's credentials).
//
// The map is keyed by the token's SHA-256, never by the token: a lookup's
// timing can then only tell an attacker about hashes, not about how much
// of a guessed token was right.
type tokenStore struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu  sync.Mutex
	lru *list.List // of *tokenEntry, most recently used at the front
	by  map[[sha256.Size]byte]*list.Element
}

type tokenEntry struct {
	key     [sha256.Size]byte
	who     principal
	expires time.Time
}

func newTokenStore(ttl time.Duration, max int, now func() time.Time) *tokenStore {
	return &tokenStore{ttl: ttl, max: max, now: now, lru: list.New(), by: map[[sha256.Size]byte]*list.Element{}}
}

// issue makes a new token for who.
func (ts *tokenStore) issue(who principal) (string, error) {
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	tok := base64.RawURLEncoding.EncodeToString(b)
	key := sha256.Sum256([]byte(tok))
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.by[key] = ts.lru.PushFront(&tokenEntry{key: key, who: who, expires: ts.now().Add(ts.ttl)})
	for ts.lru.Len() > ts.max {
		ts.remove(ts.lru.Back())
	}
	return tok, nil
}

// lookup returns who a token was issued to, if it is known and unexpired.
func (ts *tokenStore) lookup(tok string) (principal, bool) {
	if tok == "" {
		return principal{}, false
	}
	key := sha256.Sum256([]byte(tok))
	ts.mu.Lock()
	defer ts.mu.Unlock()
	el, ok := ts.by[key]
	if !ok {
		return principal{}, false
	}
	e := el.Value.(*tokenEntry)
	if !ts.now().Before(e.expires) {
		ts.remove(el)
		return principal{}, false
	}
	ts.lru.MoveToFront(el)
	return e.who, true
}

func (ts *tokenStore) remove(el *list.Element) {
	delete(ts.by, el.Value.(*tokenEntry).key)
	ts.lru.Remove(el)
}

func (ts *tokenStore) len() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.lru.Len()
}
