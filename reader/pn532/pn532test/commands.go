package pn532test

import "bytes"

// run executes an acknowledged command and returns its response frame, or
// nil when the command waits for a card.
func (c *Chip) run(cmd []byte) []byte {
	p := cmd[1:]
	switch cmd[0] {
	case 0x00: // Diagnose: only the communication line test (echo)
		if len(p) >= 1 && p[0] == 0x00 {
			return chipFrame(0x01, p...)
		}
	case 0x02: // GetFirmwareVersion
		if len(p) == 0 {
			return chipFrame(0x03, c.fw[:]...)
		}
	case 0x12: // SetParameters
		if len(p) == 1 {
			c.params = p[0]
			return chipFrame(0x13)
		}
	case 0x14: // SAMConfiguration: mode [timeout [irq]]
		if len(p) >= 1 && len(p) <= 3 && p[0] >= 1 && p[0] <= 4 {
			if p[0] != 1 && len(p) < 2 {
				break // virtual card and dual card modes need the timeout
			}
			c.lowVbat = false
			c.irqEnabled = len(p) < 3 || p[2] != 0
			return chipFrame(0x15)
		}
	case 0x16: // PowerDown: wake-up enable [generate IRQ]
		if len(p) == 1 || len(p) == 2 {
			c.sleepNext = true
			c.field = false
			c.resetCards()
			return chipFrame(0x17, 0x00)
		}
	case 0x32: // RFConfiguration: item, values
		if len(p) >= 1 && rfItemLen[p[0]] != 0 && len(p)-1 == rfItemLen[p[0]] {
			switch p[0] {
			case 0x01:
				c.field = p[1]&0x01 != 0
				if !c.field {
					c.resetCards()
				}
			case 0x05:
				c.retries = p[3]
			}
			return chipFrame(0x33)
		}
	case 0x40: // InDataExchange: Tg, data
		if len(p) >= 1 && len(p)-1 <= 262 {
			return c.dataExchange(p[0]&0x3F, p[1:])
		}
	case 0x44, 0x52: // InDeselect, InRelease: Tg (0: all)
		if len(p) == 1 {
			if p[0] != 0 && p[0] != c.tg {
				return chipFrame(cmd[0]+1, 0x27)
			}
			if c.card != nil && c.tg != 0 {
				c.card.state = cardHalt
			}
			c.tg = 0
			return chipFrame(cmd[0]+1, 0x00)
		}
	case 0x4A: // InListPassiveTarget: MaxTg, BrTy [InitiatorData]
		if len(p) >= 2 && (p[0] == 1 || p[0] == 2) {
			return c.listPassive(cmd)
		}
	}
	return errorFrame
}

// rfItemLen is the number of values of each RFConfiguration item.
var rfItemLen = map[byte]int{0x01: 1, 0x02: 3, 0x04: 1, 0x05: 3, 0x0A: 11, 0x0B: 8, 0x0C: 3, 0x0D: 9}

// resetCards is the field going off: cards lose power.
func (c *Chip) resetCards() {
	if c.card != nil {
		c.card.state = cardIdle
	}
	c.tg = 0
}

// listPassive runs InListPassiveTarget: a card that answers activation is
// selected and returned; without one the chip answers "no target" after
// its retries, or waits for a card when they are 0xFF.
func (c *Chip) listPassive(cmd []byte) []byte {
	brty, init := cmd[2], cmd[3:]
	c.field = true
	c.tg = 0
	cd := c.card
	if brty == 0x00 && cd != nil && cd.state != cardActive &&
		(len(init) == 0 || bytes.Equal(init, cd.uid)) {
		if cd.RandomUID && cd.state == cardIdle {
			cd.uid = c.randomUID()
		}
		cd.state = cardActive
		c.tg = 1
		t := []byte{0x01, 0x01, byte(cd.ATQA >> 8), byte(cd.ATQA), cd.SAK, byte(len(cd.uid))}
		t = append(t, cd.uid...)
		if cd.SAK&0x20 != 0 && cd.ATS != nil && c.params&0x10 != 0 {
			t = append(t, cd.ATS...)
		}
		return chipFrame(0x4B, t...)
	}
	if c.retries == 0xFF {
		return nil
	}
	return chipFrame(0x4B, 0x00)
}

// randomUID makes up a 4-byte random UID (xorshift32, deterministic).
func (c *Chip) randomUID() []byte {
	x := c.rnd
	x ^= x << 13
	x ^= x >> 17
	x ^= x << 5
	c.rnd = x
	return []byte{0x08, byte(x >> 16), byte(x >> 8), byte(x)}
}

// dataExchange hands data to the selected card.
func (c *Chip) dataExchange(tg byte, data []byte) []byte {
	if tg != 1 || c.tg != 1 {
		return chipFrame(0x41, 0x27)
	}
	cd := c.card
	if cd == nil || cd.APDU == nil {
		return chipFrame(0x41, 0x01)
	}
	resp, status := cd.APDU(append([]byte(nil), data...))
	if status != 0 {
		return chipFrame(0x41, status&0x3F)
	}
	if len(resp) > 262 {
		return chipFrame(0x41, append([]byte{0x40}, resp[:262]...)...)
	}
	return chipFrame(0x41, append([]byte{0x00}, resp...)...)
}
