//go:build !linux

package main

// kernelClockSynced is unknown off Linux.
func kernelClockSynced() (synced, known bool) { return false, false }
