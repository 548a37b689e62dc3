package imap_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// step is one command of a scripted session: the completion must start
// with status ("!OK": anything but OK), every line of want must be among
// the untagged responses ("{tag}" stands for the command's tag), and no
// line may contain a string of absent.
type step struct {
	name   string
	cmd    string
	status string
	want   []string
	absent []string
}

func runSteps(t *testing.T, r *rawConn, steps []step) {
	t.Helper()
	for _, s := range steps {
		u, st := r.cmd("%s", s.cmd)
		tag := fmt.Sprintf("t%d", r.tag)
		if s.status == "!OK" && !strings.HasPrefix(st, "OK") {
			continue
		}
		if !strings.HasPrefix(st, s.status) {
			t.Errorf("%s: %s: got %q, want %q (untagged %q)", s.name, s.cmd, st, s.status, u)
			continue
		}
		for _, w := range s.want {
			w = strings.ReplaceAll(w, "{tag}", tag)
			if !slices.Contains(u, w) {
				t.Errorf("%s: %s: missing %q in %q", s.name, s.cmd, w, u)
			}
		}
		for _, a := range s.absent {
			if slices.ContainsFunc(u, func(l string) bool { return strings.Contains(l, a) }) {
				t.Errorf("%s: %s: unexpected %q in %q", s.name, s.cmd, a, u)
			}
		}
	}
}

func TestMailboxes(t *testing.T) {
	ts := startServer(t, nil)
	msg1, msg2 := testMessage("one", "first"), testMessage("two", "second")
	ts.deliver(t, alice, "INBOX", msg1)
	ts.deliver(t, alice, "INBOX", msg2)
	r := dialRaw(t, ts.addr)
	r.login(alice)
	runSteps(t, r, []step{
		{name: "delimiter", cmd: `LIST "" ""`, status: "OK", want: []string{`* LIST (\Noselect) "/" ""`}},
		{name: "standard folders with special-use", cmd: `LIST "" "*"`, status: "OK", want: []string{
			`* LIST (\HasNoChildren) "/" INBOX`,
			`* LIST (\HasNoChildren \Sent) "/" "Sent"`,
			`* LIST (\HasNoChildren \Drafts) "/" "Drafts"`,
			`* LIST (\HasNoChildren \Trash) "/" "Trash"`,
			`* LIST (\HasNoChildren \Junk) "/" "Junk"`,
			`* LIST (\HasNoChildren \Archive) "/" "Archive"`,
		}},
		{name: "inbox in any case", cmd: `LIST "" "inbox"`, status: "OK", want: []string{`* LIST (\HasNoChildren) "/" INBOX`}},
		{name: "create nested", cmd: `CREATE "Projects/2024/Q1"`, status: "OK"},
		{name: "parents exist", cmd: `LIST "" "Projects*"`, status: "OK", want: []string{
			`* LIST (\HasChildren) "/" "Projects"`,
			`* LIST (\HasChildren) "/" "Projects/2024"`,
			`* LIST (\HasNoChildren) "/" "Projects/2024/Q1"`,
		}},
		{name: "percent stops at the delimiter", cmd: `LIST "" "%"`, status: "OK",
			want: []string{`* LIST (\HasChildren) "/" "Projects"`}, absent: []string{`"Projects/2024"`}},
		{name: "reference", cmd: `LIST "Projects/" "%"`, status: "OK",
			want: []string{`* LIST (\HasChildren) "/" "Projects/2024"`}, absent: []string{`"Projects/2024/Q1"`}},
		{name: "trailing delimiter", cmd: `CREATE "Lists/"`, status: "OK"},
		{name: "created without the delimiter", cmd: `LIST "" "Lists"`, status: "OK", want: []string{`* LIST (\HasNoChildren) "/" "Lists"`}},
		{name: "exists", cmd: `CREATE "Projects"`, status: "NO [ALREADYEXISTS]"},
		{name: "inbox exists", cmd: `CREATE "inbox"`, status: "NO [ALREADYEXISTS]"},
		{name: "escaping the tree", cmd: `CREATE "../../etc"`, status: "NO"},
		{name: "empty level", cmd: `CREATE "a//b"`, status: "NO"},
		{name: "non-ASCII in modified UTF-7", cmd: `CREATE "&AMk-t&AOk-/R&AOk-sum&AOk-"`, status: "OK"},
		{name: "listed in modified UTF-7", cmd: `LIST "" "&AMk-t&AOk-*"`, status: "OK", want: []string{
			`* LIST (\HasChildren) "/" "&AMk-t&AOk-"`,
			`* LIST (\HasNoChildren) "/" "&AMk-t&AOk-/R&AOk-sum&AOk-"`,
		}},
		{name: "select non-ASCII", cmd: `SELECT "&AMk-t&AOk-/R&AOk-sum&AOk-"`, status: "OK [READ-WRITE]"},
		{name: "unselect", cmd: `UNSELECT`, status: "OK"},
		{name: "rename with children", cmd: `RENAME "Projects" "Work/Old"`, status: "OK"},
		{name: "children moved", cmd: `LIST "" "Work*"`, status: "OK", want: []string{
			`* LIST (\HasChildren) "/" "Work"`,
			`* LIST (\HasChildren) "/" "Work/Old"`,
			`* LIST (\HasChildren) "/" "Work/Old/2024"`,
			`* LIST (\HasNoChildren) "/" "Work/Old/2024/Q1"`,
		}},
		{name: "old name gone", cmd: `LIST "" "Projects*"`, status: "OK", absent: []string{"Projects"}},
		{name: "rename missing", cmd: `RENAME "Nope" "Other"`, status: "NO [NONEXISTENT]"},
		{name: "rename onto existing", cmd: `RENAME "Lists" "Work"`, status: "NO [ALREADYEXISTS]"},
		{name: "rename creates parents", cmd: `RENAME "Work/Old/2024" "Years/Past/2024"`, status: "OK"},
		{name: "parents selectable", cmd: `LIST "" "Years*"`, status: "OK", want: []string{
			`* LIST (\HasChildren) "/" "Years"`,
			`* LIST (\HasChildren) "/" "Years/Past"`,
			`* LIST (\HasChildren) "/" "Years/Past/2024"`,
		}},
		{name: "and back", cmd: `RENAME "Years/Past/2024" "Work/Old/2024"`, status: "OK"},
		{name: "refused rename leaves no parents", cmd: `RENAME "Lists" "Lists/Sub/Deeper"`, status: "NO"},
		{name: "no parents left", cmd: `LIST "" "Lists*"`, status: "OK", want: []string{`* LIST (\HasNoChildren) "/" "Lists"`}},
		{name: "status", cmd: `STATUS INBOX (MESSAGES UIDNEXT UNSEEN DELETED SIZE RECENT)`, status: "OK",
			want: []string{fmt.Sprintf(`* STATUS INBOX (MESSAGES 2 UIDNEXT 3 UNSEEN 2 DELETED 0 SIZE %d RECENT 0)`, len(msg1)+len(msg2))}},
		{name: "status of a missing mailbox", cmd: `STATUS Nope (MESSAGES)`, status: "NO [NONEXISTENT]"},
		{name: "rename INBOX moves its messages", cmd: `RENAME INBOX "Old Inbox"`, status: "OK"},
		{name: "INBOX is empty", cmd: `STATUS INBOX (MESSAGES)`, status: "OK", want: []string{`* STATUS INBOX (MESSAGES 0)`}},
		{name: "messages moved", cmd: `STATUS "Old Inbox" (MESSAGES)`, status: "OK", want: []string{`* STATUS "Old Inbox" (MESSAGES 2)`}},
		{name: "delete leaf", cmd: `DELETE "Work/Old/2024/Q1"`, status: "OK"},
		{name: "deleted", cmd: `LIST "" "Work/Old/2024*"`, status: "OK",
			want: []string{`* LIST (\HasNoChildren) "/" "Work/Old/2024"`}, absent: []string{"Q1"}},
		{name: "delete INBOX", cmd: `DELETE INBOX`, status: "NO"},
		{name: "delete missing", cmd: `DELETE "Nope"`, status: "NO [NONEXISTENT]"},
		{name: "subscribe", cmd: `SUBSCRIBE "Lists"`, status: "OK"},
		{name: "lsub", cmd: `LSUB "" "*"`, status: "OK", want: []string{`* LSUB (\HasNoChildren \Subscribed) "/" "Lists"`}},
		{name: "list subscribed", cmd: `LIST (SUBSCRIBED) "" "*"`, status: "OK",
			want: []string{`* LIST (\HasNoChildren \Subscribed) "/" "Lists"`}, absent: []string{`"Old Inbox"`}},
		{name: "return subscribed", cmd: `LIST "" "L*" RETURN (SUBSCRIBED)`, status: "OK",
			want: []string{`* LIST (\HasNoChildren \Subscribed) "/" "Lists"`}},
		{name: "recursive match", cmd: `SUBSCRIBE "Work/Old/2024"`, status: "OK"},
		{name: "childinfo", cmd: `LIST (SUBSCRIBED RECURSIVEMATCH) "" "Work/%"`, status: "OK",
			want: []string{`* LIST (\HasChildren) "/" "Work/Old" (CHILDINFO ("SUBSCRIBED"))`}},
		{name: "unsubscribe", cmd: `UNSUBSCRIBE "Lists"`, status: "OK"},
		{name: "lsub after unsubscribe", cmd: `LSUB "" "Lists"`, status: "OK", absent: []string{"Lists"}},
		{name: "special-use selection", cmd: `LIST (SPECIAL-USE) "" "*"`, status: "OK",
			want: []string{`* LIST (\HasNoChildren \Trash) "/" "Trash"`}, absent: []string{"INBOX", "Lists"}},
		{name: "list-status", cmd: `LIST "" "Old Inbox" RETURN (STATUS (MESSAGES UNSEEN))`, status: "OK", want: []string{
			`* LIST (\HasNoChildren) "/" "Old Inbox"`,
			`* STATUS "Old Inbox" (MESSAGES 2 UNSEEN 2)`,
		}},
		{name: "namespace", cmd: `NAMESPACE`, status: "OK", want: []string{`* NAMESPACE (("" "/")) NIL NIL`}},
		{name: "create special-use refused", cmd: `CREATE "Bin" (USE (\Trash))`, status: "NO [USEATTR]"},
	})

	// With UTF8=ACCEPT the names travel as UTF-8 (RFC 6855).
	u := dialRaw(t, ts.addr)
	u.login(alice)
	runSteps(t, u, []step{
		{name: "enable", cmd: `ENABLE UTF8=ACCEPT`, status: "OK", want: []string{`* ENABLED UTF8=ACCEPT`}},
		{name: "utf-8 names", cmd: `LIST "" "Été*"`, status: "OK", want: []string{`* LIST (\HasNoChildren) "/" "Été/Résumé"`}},
		{name: "create utf-8", cmd: `CREATE "Ωmega"`, status: "OK"},
	})
	runSteps(t, r, []step{
		{name: "seen by a UTF-7 client", cmd: `LIST "" "&A6k-mega"`, status: "OK", want: []string{`* LIST (\HasNoChildren) "/" "&A6k-mega"`}},
	})
}
