//go:build !linux

package main

// kernelClock is unknown off Linux.
func kernelClock() kernelClockState { return kernelClockState{} }
