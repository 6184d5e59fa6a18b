package main

import (
	"context"
	"errors"
	"testing"
)

// PIN hashes are made a few at a time: one more waits for a free slot,
// and gives up when its request ends.
func TestHashPINBounded(t *testing.T) {
	a := &api{pins: cheapPINs, hashing: make(chan struct{}, 1)}
	if _, err := a.hashPIN(context.Background(), []byte("482916"), []byte{1, 2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	a.hashing <- struct{}{} // a hash in progress
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := a.hashPIN(ctx, []byte("482916"), []byte{1, 2, 3, 4}); !errors.Is(err, context.Canceled) {
		t.Fatalf("a hash beyond the bound: %v", err)
	}
	<-a.hashing
	if h, err := a.hashPIN(context.Background(), []byte("482916"), []byte{1, 2, 3, 4}); err != nil || h == "" {
		t.Fatalf("after the slot came free: %q %v", h, err)
	}
}
