package smtp

import (
	"sort"
	"sync"
	"time"
)

// sendLimits are the per-user sending limits of submission
// (submission.max_messages_per_hour, max_messages_per_day): sliding windows
// over the times of each user's accepted messages, kept in memory. A restart
// forgets them, and sessions running at the same time may together pass a
// limit by the messages they have in flight (the check is at MAIL, the count
// at the end of DATA). Memory is bounded by perDay timestamps per user.
type sendLimits struct {
	perHour, perDay int // 0: no limit
	now             func() time.Time

	mu   sync.Mutex
	sent map[string][]time.Time // user → times within the last day, oldest first
}

func newSendLimits(perHour, perDay int, now func() time.Time) *sendLimits {
	if now == nil {
		now = time.Now
	}
	return &sendLimits{perHour: perHour, perDay: perDay, now: now, sent: make(map[string][]time.Time)}
}

func (l *sendLimits) off() bool { return l.perHour <= 0 && l.perDay <= 0 }

// allow reports whether user may start another message; when not, it
// returns the limit reached and its window ("hour" or "day").
func (l *sendLimits) allow(user string) (ok bool, limit int, window string) {
	if l.off() {
		return true, 0, ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	times := l.prune(user, now)
	if l.perDay > 0 && len(times) >= l.perDay {
		return false, l.perDay, "day"
	}
	if l.perHour > 0 {
		cut := now.Add(-time.Hour)
		i := sort.Search(len(times), func(i int) bool { return times[i].After(cut) })
		if len(times)-i >= l.perHour {
			return false, l.perHour, "hour"
		}
	}
	return true, 0, ""
}

// record counts one accepted message of user.
func (l *sendLimits) record(user string) {
	if l.off() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	times := l.prune(user, now)
	l.sent[user] = append(times, now)
}

// prune drops the times older than a day (the longest window) and returns
// what is left. Called with mu held.
func (l *sendLimits) prune(user string, now time.Time) []time.Time {
	times := l.sent[user]
	cut := now.Add(-24 * time.Hour)
	i := sort.Search(len(times), func(i int) bool { return times[i].After(cut) })
	if i == 0 {
		return times
	}
	if i == len(times) {
		delete(l.sent, user)
		return nil
	}
	// Copy down when the dropped head is large, so the array does not grow forever.
	if i > len(times)/2 {
		times = append([]time.Time(nil), times[i:]...)
	} else {
		times = times[i:]
	}
	l.sent[user] = times
	return times
}
