package display_test

import (
	"testing"
)

// traffic is a bus's count of transactions and bytes written.
type traffic interface {
	Traffic() (transactions, bytes int)
}

// benchShow alternates Show between two screens and reports the I²C
// traffic each Show costs.
func benchShow(b *testing.B, show func([2]string) error, bus traffic, a, c [2]string) {
	if err := show(a); err != nil {
		b.Fatal(err)
	}
	n0, b0 := bus.Traffic()
	b.ResetTimer()
	for i := range b.N {
		lines := c
		if i%2 == 1 {
			lines = a
		}
		if err := show(lines); err != nil {
			b.Fatal(err)
		}
	}
	n, by := bus.Traffic()
	b.ReportMetric(float64(n-n0)/float64(b.N), "i2c-tx/op")
	b.ReportMetric(float64(by-b0)/float64(b.N), "i2c-bytes/op")
}

// One more digit of a masked PIN, and every character of both lines.
var benchScreens = []struct {
	name string
	a, c [2]string
}{
	{"digit", [2]string{"Enter PIN", "***"}, [2]string{"Enter PIN", "****"}},
	{"full", [2]string{"Enter PIN", "****"}, [2]string{"Locked out 30s", "try again later"}},
}

func BenchmarkShow(b *testing.B) {
	for _, s := range benchScreens {
		b.Run("lcd/"+s.name, func(b *testing.B) {
			l, emu := newLCD(b)
			benchShow(b, l.Show, emu, s.a, s.c)
		})
		for _, h := range []string{"32", "64"} {
			b.Run("oled"+h+"/"+s.name, func(b *testing.B) {
				height := 32
				if h == "64" {
					height = 64
				}
				d, emu := newOLED(b, 0x3C, height)
				benchShow(b, d.Show, emu, s.a, s.c)
			})
		}
	}
}
