//! Mode pages (SPC-4 §7.5, SBC-3 §6.4): caching, control and informational exceptions, with
//! MODE SENSE(6/10) and MODE SELECT(6/10).

use super::lun::Lun;
use super::sense::{Sense, SenseReason};

/// The changeable mode parameters of one LUN; everything else in the pages is fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModePages {
    /// Caching page WCE (SBC-3 §6.4.5): when clear every write is made durable before GOOD.
    pub wce: bool,
    /// Control page D_SENSE (SPC-4 §7.5.8): descriptor-format sense data.
    pub d_sense: bool,
    /// Control page SWP (SPC-4 §7.5.8): software write protect.
    pub swp: bool,
    /// Control page TAS (SPC-4 §7.5.8): tasks aborted by another I_T nexus end with TASK
    /// ABORTED status instead of silently.
    pub tas: bool,
}

impl Default for ModePages {
    fn default() -> Self {
        ModePages { wce: true, d_sense: false, swp: false, tas: false }
    }
}

pub const PAGE_CACHING: u8 = 0x08;
pub const PAGE_CONTROL: u8 = 0x0A;
pub const PAGE_INFORMATIONAL_EXCEPTIONS: u8 = 0x1C;
const PAGE_ALL: u8 = 0x3F;
/// Ascending page-code order, as "return all pages" requires (SPC-4 §6.13).
const PAGES: [u8; 3] = [PAGE_CACHING, PAGE_CONTROL, PAGE_INFORMATIONAL_EXCEPTIONS];

/// SPC-4 §6.13 Table 197 page control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PageControl {
    Current,
    Changeable,
    Default,
}

fn page_bytes(code: u8, values: ModePages, control: PageControl) -> Vec<u8> {
    let changeable = control == PageControl::Changeable;
    let bit = |on: bool, mask: u8| if on { mask } else { 0 };
    match code {
        PAGE_CACHING => {
            let mut page = vec![0u8; 20];
            page[0] = PAGE_CACHING;
            page[1] = 0x12;
            page[2] = if changeable { 0x04 } else { bit(values.wce, 0x04) };
            page
        }
        PAGE_CONTROL => {
            let mut page = vec![0u8; 12];
            page[0] = PAGE_CONTROL;
            page[1] = 0x0A;
            if changeable {
                page[2] = 0x04;
                page[4] = 0x08;
                page[5] = 0x40;
            } else {
                // GLTSD: no log parameters are saved; QAM 1: commands are reordered freely.
                page[2] = 0x02 | bit(values.d_sense, 0x04);
                page[3] = 0x10;
                page[4] = bit(values.swp, 0x08);
                page[5] = bit(values.tas, 0x40);
            }
            page
        }
        _ => {
            let mut page = vec![0u8; 12];
            page[0] = PAGE_INFORMATIONAL_EXCEPTIONS;
            page[1] = 0x0A;
            if !changeable {
                page[2] = 0x08; // DEXCPT: no informational exceptions are reported
            }
            page
        }
    }
}

/// MODE SENSE(6) (SPC-4 §6.13) or MODE SENSE(10) (SPC-4 §6.14); returns the untruncated data.
pub(crate) fn mode_sense(cdb: &[u8], lun: &Lun, ten: bool) -> Result<Vec<u8>, Sense> {
    let dbd = cdb[1] & 0x08 != 0;
    let llbaa = ten && cdb[1] & 0x10 != 0;
    let page_code = cdb[2] & 0x3F;
    let subpage = cdb[3];
    let control = match cdb[2] >> 6 {
        0 => PageControl::Current,
        1 => PageControl::Changeable,
        2 => PageControl::Default,
        _ => return Err(SenseReason::SavingParametersNotSupported.into()),
    };
    let values = if control == PageControl::Default { ModePages::default() } else { lun.mode() };

    let mut pages = Vec::new();
    match (page_code, subpage) {
        (PAGE_ALL, 0x00) | (PAGE_ALL, 0xFF) => {
            for code in PAGES {
                pages.extend(page_bytes(code, values, control));
            }
        }
        (code, 0x00) | (code, 0xFF) if PAGES.contains(&code) => pages.extend(page_bytes(code, values, control)),
        (code, 0x00) | (code, 0xFF) if !PAGES.contains(&code) => return Err(Sense::invalid_cdb_field(2, Some(5))),
        _ => return Err(Sense::invalid_cdb_field(3, Some(7))),
    }

    // SBC-3 §6.4.1 device-specific parameter: WP and DPOFUA (DPO and FUA are honoured).
    let current = lun.mode();
    let write_protected = lun.read_only() || current.swp;
    let device_specific = (if write_protected { 0x80 } else { 0 }) | 0x10;

    let descriptor = if dbd {
        Vec::new()
    } else if llbaa {
        // SBC-3 §6.4.2.3 long LBA block descriptor.
        let mut d = vec![0u8; 16];
        d[0..8].copy_from_slice(&lun.block_count().to_be_bytes());
        d[12..16].copy_from_slice(&lun.block_size().to_be_bytes());
        d
    } else {
        // SBC-3 §6.4.2.2 short LBA block descriptor; all ones when the count does not fit.
        let mut d = vec![0u8; 8];
        let count = u32::try_from(lun.block_count()).unwrap_or(u32::MAX);
        d[0..4].copy_from_slice(&count.to_be_bytes());
        d[5..8].copy_from_slice(&lun.block_size().to_be_bytes()[1..]);
        d
    };

    let mut out = Vec::with_capacity(8 + descriptor.len() + pages.len());
    if ten {
        let len = (6 + descriptor.len() + pages.len()) as u16;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&[0, device_specific, if llbaa && !dbd { 1 } else { 0 }, 0]);
        out.extend_from_slice(&(descriptor.len() as u16).to_be_bytes());
    } else {
        let len = 3 + descriptor.len() + pages.len();
        out.extend_from_slice(&[len.min(255) as u8, 0, device_specific, descriptor.len() as u8]);
    }
    out.extend(descriptor);
    out.extend(pages);
    Ok(out)
}

/// MODE SELECT(6/10) parameter list (SPC-4 §6.11, §6.12, §7.5). Validates every page before
/// applying any, and returns whether a value changed.
pub(crate) fn mode_select(lun: &Lun, param: &[u8], ten: bool) -> Result<bool, Sense> {
    let header_len = if ten { 8 } else { 4 };
    if param.len() < header_len {
        return Err(SenseReason::ParameterListLengthError.into());
    }
    let medium_type_at = if ten { 2 } else { 1 };
    if param[medium_type_at] != 0 {
        return Err(Sense::invalid_param_field(medium_type_at, None));
    }
    let (descriptor_len, long_lba) = if ten {
        (u16::from_be_bytes([param[6], param[7]]) as usize, param[4] & 0x01 != 0)
    } else {
        (param[3] as usize, false)
    };
    let expected_descriptor = if long_lba { 16 } else { 8 };
    if descriptor_len != 0 && descriptor_len != expected_descriptor {
        return Err(Sense::invalid_param_field(if ten { 6 } else { 3 }, None));
    }
    if param.len() < header_len + descriptor_len {
        return Err(SenseReason::ParameterListLengthError.into());
    }
    if descriptor_len != 0 {
        // The medium cannot be reformatted: the block length must stay what it is (SBC-3 §6.4.2).
        let d = &param[header_len..header_len + descriptor_len];
        let (length_at, block_len) = if long_lba {
            (12, u32::from_be_bytes([d[12], d[13], d[14], d[15]]))
        } else {
            (5, u32::from_be_bytes([0, d[5], d[6], d[7]]))
        };
        if block_len != lun.block_size() {
            return Err(Sense::invalid_param_field(header_len + length_at, None));
        }
    }

    let mut state = lun.state();
    let current = state.mode;
    let mut updated = current;
    let mut at = header_len + descriptor_len;
    while at < param.len() {
        if param.len() - at < 2 {
            return Err(SenseReason::ParameterListLengthError.into());
        }
        let code = param[at] & 0x3F;
        if param[at] & 0x40 != 0 || !PAGES.contains(&code) {
            // SPF set (no subpages here) or an unsupported page.
            return Err(Sense::invalid_param_field(at, None));
        }
        let template = page_bytes(code, current, PageControl::Current);
        let changeable = page_bytes(code, current, PageControl::Changeable);
        if param[at + 1] as usize != template.len() - 2 {
            return Err(Sense::invalid_param_field(at + 1, None));
        }
        if param.len() - at < template.len() {
            return Err(SenseReason::ParameterListLengthError.into());
        }
        let page = &param[at..at + template.len()];
        for i in 2..template.len() {
            let differs = (page[i] ^ template[i]) & !changeable[i];
            if differs != 0 {
                return Err(Sense::invalid_param_field(at + i, Some(7 - differs.leading_zeros() as u8)));
            }
        }
        match code {
            PAGE_CACHING => updated.wce = page[2] & 0x04 != 0,
            PAGE_CONTROL => {
                updated.d_sense = page[2] & 0x04 != 0;
                updated.swp = page[4] & 0x08 != 0;
                updated.tas = page[5] & 0x40 != 0;
            }
            _ => {}
        }
        at += template.len();
    }
    let changed = state.mode != updated;
    state.mode = updated;
    Ok(changed)
}
