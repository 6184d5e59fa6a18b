package pn532test

// The chip's side of the frame format (UM0701-02 §6.2.1), written apart
// from the driver's so that a mistake in one is not mirrored in the other.

var (
	ackFrame   = []byte{0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00}
	errorFrame = []byte{0x00, 0x00, 0xFF, 0x01, 0xFF, 0x7F, 0x81, 0x00}
)

// hostFrame is a frame written by the host.
type hostFrame int

const (
	hostBad  hostFrame = iota // not a frame the chip understands: ignored
	hostACK                   // abort the running command
	hostNACK                  // send the last response again
	hostInfo                  // a command
)

// parseHost reads a frame written by the host. For hostInfo, data is the
// command code and its parameters (TFI removed).
func parseHost(b []byte) (hostFrame, []byte) {
	i := 0
	for i < len(b) && b[i] == 0x00 {
		i++
	}
	if i == 0 || i+2 >= len(b) || b[i] != 0xFF {
		return hostBad, nil
	}
	l, lcs := int(b[i+1]), int(b[i+2])
	switch {
	case l == 0x00 && lcs == 0xFF:
		return hostACK, nil
	case l == 0xFF && lcs == 0x00:
		return hostNACK, nil
	}
	start := i + 3
	if l == 0xFF && lcs == 0xFF {
		if i+5 >= len(b) {
			return hostBad, nil
		}
		hi, lo, c := int(b[i+3]), int(b[i+4]), int(b[i+5])
		if (hi+lo+c)&0xFF != 0 {
			return hostBad, nil
		}
		l = hi<<8 | lo
		start = i + 6
	} else if (l+lcs)&0xFF != 0 {
		return hostBad, nil
	}
	if l < 2 || start+l >= len(b) {
		return hostBad, nil
	}
	sum := 0
	for _, c := range b[start : start+l+1] {
		sum += int(c)
	}
	if sum&0xFF != 0 || b[start] != 0xD4 {
		return hostBad, nil
	}
	return hostInfo, b[start+1 : start+l]
}

// chipFrame builds the frame the chip sends for response code rc and its
// parameters: a normal frame up to 255 bytes of TFI and data, an extended
// one above.
func chipFrame(rc byte, params ...byte) []byte {
	l := 2 + len(params)
	f := make([]byte, 0, l+10)
	if l <= 0xFF {
		f = append(f, 0x00, 0x00, 0xFF, byte(l), byte(-l))
	} else {
		hi, lo := byte(l>>8), byte(l)
		f = append(f, 0x00, 0x00, 0xFF, 0xFF, 0xFF, hi, lo, byte(-(int(hi) + int(lo))))
	}
	sum := 0xD5 + int(rc)
	f = append(f, 0xD5, rc)
	for _, p := range params {
		sum += int(p)
	}
	f = append(f, params...)
	return append(f, byte(-sum), 0x00)
}
