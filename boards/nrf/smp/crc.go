package smp

// crcTable is CRC-16/XMODEM (poly 0x1021, not reflected) for one byte.
var crcTable = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()

// CRC16 returns the CRC-16/XMODEM of data: polynomial 0x1021, initial value
// 0x0000, not reflected, no final XOR. This is Zephyr's
// crc16_itu_t(0x0000, ...) used by the mcumgr serial transport; it is not
// CRC-16/CCITT-FALSE (initial value 0xFFFF).
func CRC16(data []byte) uint16 { return CRC16Update(0, data) }

// CRC16Update continues a CRC-16/XMODEM computation.
func CRC16Update(crc uint16, data []byte) uint16 {
	for _, b := range data {
		crc = crc<<8 ^ crcTable[byte(crc>>8)^b]
	}
	return crc
}
