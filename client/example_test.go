package client_test

import (
	"context"
	"errors"
	"log"
	"time"

	"github.com/idgen/idgen/client"
)

// A payment saga: issue an ID with a deadline, commit it when the payment
// went through, compensate it when it did not. A commit that comes too
// late finds the ID compensated (ErrExpired).
func Example() {
	c, err := client.New(client.Config{
		Endpoints: []string{"https://idgen-1.internal:8443", "https://idgen-2.internal:8443"},
		Token:     client.StaticToken("eyJhbGciOi..."),
		Retry:     client.RetryPolicy{MaxAttempts: 5},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	tx, err := c.Generate(ctx, client.GenerateRequest{
		Timeout:  10 * time.Minute,
		Metadata: map[string]string{"order": "A-17"},
	})
	if err != nil {
		log.Fatal(err)
	}

	if err := charge(tx.ID); err != nil {
		if _, err := c.Compensate(ctx, tx.ID, "payment refused", client.WithSource("payments")); err != nil {
			log.Print(err) // the ID's deadline compensates it anyway
		}
		return
	}
	_, err = c.Commit(ctx, tx.ID)
	switch {
	case errors.Is(err, client.ErrExpired), errors.Is(err, client.ErrConflict):
		log.Printf("%s was compensated before the commit: refund the charge", tx.ID)
	case err != nil:
		log.Print(err)
	}
}

func charge(id string) error { return nil }
