//! MaxMind-format databases (GeoIP2/GeoLite2 City or Country, and ASN) through the `maxminddb`
//! crate.
//!
//! A file is read whole into memory and checked with the crate's `verify()` before it is used:
//! the MMDB format has pointers into its data section, and a file whose tree or pointers are
//! broken may open fine and fail only on some lookups. Verifying once at load (a background
//! thread at reload) is what lets a damaged file be refused as a whole, so the data in use is
//! always a file that was checked.
//!
//! Records are decoded into small borrowed structs holding only the fields we write, so a
//! lookup allocates nothing and skips the names in other languages.

use std::net::IpAddr;
use std::path::Path;

use maxminddb::Reader;
use serde::Deserialize;

/// A loaded, verified database.
pub struct Mmdb {
    reader: Reader<Vec<u8>>,
}

impl std::fmt::Debug for Mmdb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.reader.metadata();
        f.debug_struct("Mmdb")
            .field("database_type", &m.database_type)
            .field("build_epoch", &m.build_epoch)
            .finish()
    }
}

/// Country and city of an address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Geo<'a> {
    /// ISO 3166-1 alpha-2 code (`GB`), the country MaxMind places the address in, else the
    /// country where its block is registered.
    pub country: &'a str,
    /// English city name (`London`).
    pub city: &'a str,
}

/// Autonomous system of an address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Asn<'a> {
    pub number: u32,
    pub org: &'a str,
}

#[derive(Deserialize, Default)]
struct Names<'a> {
    #[serde(borrow, default)]
    en: Option<&'a str>,
}

#[derive(Deserialize, Default)]
struct Iso<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize, Default)]
struct CityNames<'a> {
    #[serde(borrow, default)]
    names: Names<'a>,
}

#[derive(Deserialize)]
struct GeoRecord<'a> {
    #[serde(borrow, default)]
    country: Iso<'a>,
    #[serde(borrow, default)]
    registered_country: Iso<'a>,
    #[serde(borrow, default)]
    city: CityNames<'a>,
}

#[derive(Deserialize)]
struct AsnRecord<'a> {
    #[serde(default)]
    autonomous_system_number: Option<u32>,
    #[serde(borrow, default)]
    autonomous_system_organization: Option<&'a str>,
}

impl Mmdb {
    /// Reads and verifies a file; the error says what is wrong (I/O or damage).
    pub fn open(path: &Path) -> Result<Mmdb, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
        Mmdb::from_bytes(bytes)
    }

    /// Parses and verifies a database held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Mmdb, String> {
        let reader =
            Reader::from_source(bytes).map_err(|e| format!("not a valid MMDB file: {e}"))?;
        reader
            .verify()
            .map_err(|e| format!("damaged MMDB file: {e}"))?;
        Ok(Mmdb { reader })
    }

    /// The database's type from its metadata (`GeoLite2-City`, `GeoLite2-ASN`, ...).
    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// Country and city; `Err` only when this record cannot be decoded.
    pub fn geo(&self, ip: IpAddr) -> Result<Geo<'_>, maxminddb::MaxMindDbError> {
        let found = self.reader.lookup(ip)?;
        let Some(r) = found.decode::<GeoRecord<'_>>()? else {
            return Ok(Geo::default());
        };
        Ok(Geo {
            country: r
                .country
                .iso_code
                .or(r.registered_country.iso_code)
                .unwrap_or(""),
            city: r.city.names.en.unwrap_or(""),
        })
    }

    /// AS number and organization; `Err` only when this record cannot be decoded.
    pub fn asn(&self, ip: IpAddr) -> Result<Asn<'_>, maxminddb::MaxMindDbError> {
        let found = self.reader.lookup(ip)?;
        let Some(r) = found.decode::<AsnRecord<'_>>()? else {
            return Ok(Asn::default());
        };
        Ok(Asn {
            number: r.autonomous_system_number.unwrap_or(0),
            org: r.autonomous_system_organization.unwrap_or(""),
        })
    }
}
