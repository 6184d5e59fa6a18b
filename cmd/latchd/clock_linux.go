package main

import (
	"time"

	"golang.org/x/sys/unix"
)

// kernelClock asks the kernel (adjtimex) how good the clock is: whether
// NTP has synchronised it and the error bounds it keeps. Known is false
// when the kernel does not answer.
func kernelClock() kernelClockState {
	var tx unix.Timex
	state, err := unix.Adjtimex(&tx)
	if err != nil {
		return kernelClockState{}
	}
	return kernelClockState{
		Known:    true,
		Synced:   state != unix.TIME_ERROR && tx.Status&unix.STA_UNSYNC == 0,
		MaxError: time.Duration(tx.Maxerror) * time.Microsecond,
		EstError: time.Duration(tx.Esterror) * time.Microsecond,
	}
}
