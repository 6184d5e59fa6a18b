package door

import (
	"testing"

	"github.com/latchdoor/latch/store"
)

// A status asks as the door does: the stale policy raises the mode or
// turns on the lockdown only while the allowlist is stale.
func TestStatusAskAs(t *testing.T) {
	for _, tc := range []struct {
		st       Status
		card     bool
		mode     store.Mode
		lockdown bool
	}{
		{Status{Mode: store.ModeCardOnly}, true, store.ModeCardOnly, false},
		{Status{Mode: store.ModeCardOnly, StalePolicy: StaleCardAndPIN}, true, store.ModeCardOnly, false},
		{Status{Mode: store.ModeCardOnly, Stale: true, StalePolicy: StaleCardAndPIN}, true, store.ModeCardPIN, false},
		{Status{Mode: store.ModeCardOrPIN, Stale: true, StalePolicy: StaleCardAndPIN}, false, store.ModeCardPIN, false},
		{Status{Mode: store.ModeCardOrPIN, Stale: true, StalePolicy: StaleKeepGoing}, false, store.ModeCardOrPIN, false},
		{Status{Mode: store.ModeCardPIN, Stale: true, StalePolicy: StaleOverrideOnly}, true, store.ModeCardPIN, true},
		{Status{Mode: store.ModeCardPIN, Stale: true, StalePolicy: StaleKeepGoing}, true, store.ModeCardPIN, false},
		{Status{Mode: store.ModeCardPIN, Lockdown: true}, true, store.ModeCardPIN, true},
	} {
		s := &state{p: &params{mode: tc.st.Mode}, lockdown: tc.st.Lockdown, stale: tc.st.Stale, stalePolicy: tc.st.StalePolicy}
		mode, lockdown := tc.st.AskAs(tc.card)
		smode, slockdown := s.askAs(tc.card)
		if mode != tc.mode || lockdown != tc.lockdown || smode != mode || slockdown != lockdown {
			t.Errorf("%+v card %v: status %s %v, door %s %v, want %s %v", tc.st, tc.card, mode, lockdown, smode, slockdown, tc.mode, tc.lockdown)
		}
	}
}
