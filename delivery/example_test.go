package delivery_test

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/postyard-mail/postyard/delivery"
	"github.com/postyard-mail/postyard/delivery/deliverytest"
)

// A message spooled once and delivered to two users; the trace headers are
// prepended to each copy.
func ExampleLocal_Deliver() {
	store := deliverytest.NewMemStore() // the server passes delivery.MaildirStore{S: store}
	spoolDir, _ := os.MkdirTemp("", "spool")
	defer os.RemoveAll(spoolDir)
	local, err := delivery.NewLocal(delivery.LocalOptions{Store: store, SpoolDir: spoolDir})
	if err != nil {
		panic(err)
	}

	body := local.NewSpool()
	defer body.Close()
	_, _ = io.WriteString(body, "Subject: hi\r\n\r\nHello.\r\n")

	env := &delivery.Envelope{
		ID:   "k3v9q2m7xa.1",
		From: "sender@remote.example",
		Recipients: []delivery.Recipient{
			{Address: "team@example.test", User: "alice@example.test"},
			{Address: "team@example.test", User: "bob@example.test"},
		},
		Trace: delivery.Trace{By: "mx.example.test", Helo: "mail.remote.example", RemoteIP: netip.MustParseAddr("192.0.2.1"),
			ESMTP: true, Time: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)},
	}
	if err := local.Deliver(context.Background(), env, body); err != nil {
		fmt.Println("451:", err)
		return
	}
	copyOfBob := store.Messages("bob@example.test", "INBOX")[0].Body
	fmt.Print(strings.ReplaceAll(string(copyOfBob), "\r\n", "\n")) // CRLF as stored
	// Output:
	// Return-Path: <sender@remote.example>
	// Received: from mail.remote.example ([192.0.2.1])
	// 	by mx.example.test (Postyard) with ESMTP id k3v9q2m7xa.1; Thu, 02 Jan 2025 03:04:05 +0000
	// Subject: hi
	//
	// Hello.
}
