package main

import "golang.org/x/sys/unix"

// kernelClockSynced asks the kernel (adjtimex) whether the clock is
// synchronised. known is false when the kernel does not answer.
func kernelClockSynced() (synced, known bool) {
	var tx unix.Timex
	state, err := unix.Adjtimex(&tx)
	if err != nil {
		return false, false
	}
	return state != unix.TIME_ERROR && tx.Status&unix.STA_UNSYNC == 0, true
}
