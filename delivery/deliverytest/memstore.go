// Package deliverytest has a recording in-memory delivery.Store with
// injectable faults, for tests of delivery and of the SMTP front end.
package deliverytest

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/postyard-mail/postyard/delivery"
)

// Message is one stored copy.
type Message struct {
	UID  uint32
	Body []byte
}

// MemStore keeps messages per "user/folder" in memory. Safe for concurrent use.
type MemStore struct {
	mu       sync.Mutex
	boxes    map[string][]Message
	nextUID  map[string]uint32
	failOpen map[string]error // user → error of Mailbox
	failDlv  map[string]error // user → error of Deliver
	failExp  map[string]error // user → error of Expunge
	expunged map[string][]uint32
	delivers int
}

var _ delivery.Store = (*MemStore)(nil)

// NewMemStore returns an empty store.
func NewMemStore() *MemStore {
	return &MemStore{
		boxes: map[string][]Message{}, nextUID: map[string]uint32{},
		failOpen: map[string]error{}, failDlv: map[string]error{}, failExp: map[string]error{},
		expunged: map[string][]uint32{},
	}
}

func key(user, folder string) string { return strings.ToLower(user) + "/" + folder }

// FailOpen makes Mailbox fail for user with err (nil clears it).
func (s *MemStore) FailOpen(user string, err error) { s.set(s.failOpen, user, err) }

// FailDeliver makes Deliver fail for user with err, after reading the message.
func (s *MemStore) FailDeliver(user string, err error) { s.set(s.failDlv, user, err) }

// FailExpunge makes Expunge fail for user with err.
func (s *MemStore) FailExpunge(user string, err error) { s.set(s.failExp, user, err) }

func (s *MemStore) set(m map[string]error, user string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		delete(m, strings.ToLower(user))
	} else {
		m[strings.ToLower(user)] = err
	}
}

// Messages returns the copies in user's folder ("" is INBOX).
func (s *MemStore) Messages(user, folder string) []Message {
	if folder == "" {
		folder = "INBOX"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.boxes[key(user, folder)])
}

// Expunged returns the UIDs expunged from user's folder.
func (s *MemStore) Expunged(user, folder string) []uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.expunged[key(user, folder)])
}

// Delivers is the number of successful Deliver calls.
func (s *MemStore) Delivers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.delivers
}

// Total is the number of messages held in all folders.
func (s *MemStore) Total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, b := range s.boxes {
		n += len(b)
	}
	return n
}

// Mailbox implements delivery.Store.
func (s *MemStore) Mailbox(user, folder string) (delivery.Mailbox, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.failOpen[strings.ToLower(user)]; err != nil {
		return nil, err
	}
	return &memBox{s: s, user: user, key: key(user, folder)}, nil
}

type memBox struct {
	s    *MemStore
	user string
	key  string
}

func (b *memBox) Deliver(r io.Reader) (uint32, error) {
	body, err := io.ReadAll(r)
	if err != nil {
		return 0, fmt.Errorf("memstore: read: %w", err)
	}
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	if err := b.s.failDlv[strings.ToLower(b.user)]; err != nil {
		return 0, err
	}
	b.s.nextUID[b.key]++
	uid := b.s.nextUID[b.key]
	b.s.boxes[b.key] = append(b.s.boxes[b.key], Message{UID: uid, Body: body})
	b.s.delivers++
	return uid, nil
}

func (b *memBox) Expunge(uids []uint32) ([]uint32, error) {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	if err := b.s.failExp[strings.ToLower(b.user)]; err != nil {
		return nil, err
	}
	var gone []uint32
	kept := b.s.boxes[b.key][:0]
	for _, m := range b.s.boxes[b.key] {
		if slices.Contains(uids, m.UID) {
			gone = append(gone, m.UID)
			continue
		}
		kept = append(kept, m)
	}
	b.s.boxes[b.key] = kept
	b.s.expunged[b.key] = append(b.s.expunged[b.key], gone...)
	return gone, nil
}
