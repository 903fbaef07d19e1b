//! The Linux capture shared by the wire and replay tests: tests/data/linux-handshakes.pcap.

pub const PCAP: &[u8] = include_bytes!("../data/linux-handshakes.pcap");
const ETHERNET_HEADER_LEN: usize = 14;

/// A minimal, bounds-checked reader for classic little-endian pcap files: a 24-byte global
/// header (magic 0xa1b2c3d4 as little-endian bytes d4 c3 b2 a1), then 16-byte record headers
/// (ts_sec, ts_usec, incl_len, orig_len) each followed by incl_len bytes.
pub fn pcap_frames(file: &[u8]) -> Result<Vec<&[u8]>, String> {
    let u32_at = |at: usize| -> Result<u32, String> {
        let b = file.get(at..at + 4).ok_or(format!("short read at {at}"))?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if u32_at(0)? != 0xa1b2_c3d4 {
        return Err("not a little-endian microsecond pcap".into());
    }
    // Link type 1 = Ethernet.
    if u32_at(20)? != 1 {
        return Err("link type is not Ethernet".into());
    }
    let mut frames = Vec::new();
    let mut at = 24;
    while at < file.len() {
        let incl = u32_at(at + 8)? as usize;
        let orig = u32_at(at + 12)? as usize;
        if incl != orig {
            return Err(format!("frame at {at} was truncated by the capture"));
        }
        let start = at + 16;
        let frame = file
            .get(start..start + incl)
            .ok_or(format!("frame at {at} runs past the file"))?;
        frames.push(frame);
        at = start + incl;
    }
    Ok(frames)
}

/// The IP packets of the capture, link header stripped and EtherType checked.
pub fn packets() -> Vec<&'static [u8]> {
    pcap_frames(PCAP)
        .expect("capture parses")
        .into_iter()
        .map(|f| {
            let ethertype = u16::from_be_bytes([f[12], f[13]]);
            assert!(ethertype == 0x0800 || ethertype == 0x86dd, "{ethertype:#x}");
            &f[ETHERNET_HEADER_LEN..]
        })
        .collect()
}
