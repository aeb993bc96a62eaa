//! Realistic letters of the kinds a UK money adviser sees, each with the facts planted in it.

/// A letter and what an extractor must find in it.
#[derive(Debug, Clone, Copy)]
pub struct Letter {
    /// Short name for test messages.
    pub name: &'static str,
    /// The letter's text, one line per line.
    pub text: &'static str,
    /// Expected letter type (as `extract` names it).
    pub letter_type: &'static str,
    /// Amounts, normalised to pence-precise strings like "1234.56".
    pub amounts: &'static [&'static str],
    /// Dates as ISO `YYYY-MM-DD`.
    pub dates: &'static [&'static str],
    /// Reference and account numbers as printed.
    pub references: &'static [&'static str],
    /// Sort codes as `NN-NN-NN`.
    pub sort_codes: &'static [&'static str],
    /// The sender / creditor.
    pub sender: &'static str,
}

/// A council tax reminder.
pub const COUNCIL_TAX: Letter = Letter {
    name: "council tax reminder",
    text: "Leeds City Council
Council Tax Section, PO Box 999, Leeds LS1 1UR
Account Reference: 60012345X
Date: 14 March 2026

Ms J Smith
12 Example Street
Leeds LS6 2AB

COUNCIL TAX REMINDER NOTICE

Dear Ms Smith,
Our records show that you have not paid the instalment due on 1 March 2026.
The amount now overdue is £187.45.
If you do not pay this within 7 days, you will lose the right to pay by instalments
and the full balance of £1,312.15 for the year 2025/26 will become payable.
If the full amount is not paid we may apply to the Magistrates Court for a liability order.
Please pay to sort code 40-11-62, account 71234567.

Yours sincerely,
Revenues Manager",
    letter_type: "council_tax",
    amounts: &["187.45", "1312.15"],
    dates: &["2026-03-14", "2026-03-01"],
    references: &["60012345X", "71234567"],
    sort_codes: &["40-11-62"],
    sender: "Leeds City Council",
};

/// A DWP Universal Credit overpayment letter.
pub const UNIVERSAL_CREDIT: Letter = Letter {
    name: "universal credit overpayment",
    text: "Department for Work and Pensions
Debt Management, Mail Handling Site A, Wolverhampton WV98 2DM
National Insurance number: JT 47 31 92 B
Our reference: DM/4471/2290
Date of letter: 03/02/2026

Dear Mr Jones,
Universal Credit overpayment
We have worked out that you have been paid £2,450.00 more Universal Credit
than you were entitled to between 12 June 2025 and 11 December 2025.
We will recover this overpayment by taking £75.32 from each Universal Credit payment
starting from 28 February 2026.
If you disagree you can ask for a mandatory reconsideration within one month.

Yours sincerely,
DWP Debt Management",
    letter_type: "universal_credit",
    amounts: &["2450.00", "75.32"],
    dates: &["2026-02-03", "2025-06-12", "2025-12-11", "2026-02-28"],
    references: &["DM/4471/2290"],
    sort_codes: &[],
    sender: "Department for Work and Pensions",
};

/// A debt collection letter.
pub const DEBT_COLLECTION: Letter = Letter {
    name: "debt collection",
    text: "Lowell Financial Ltd
PO Box 5467, Leeds LS1 9FP
Lowell reference: 123456789
Original creditor: Very Catalogue
Account number: 88776655
4 April 2026

Dear Customer,
NOTICE OF ASSIGNMENT AND DEMAND FOR PAYMENT
Your account with Very Catalogue has been sold to Lowell Portfolio I Ltd.
The outstanding balance of £963.70 is now owed to us.
Please contact us by 18 April 2026 to agree a repayment plan.
If we do not hear from you we may pass your account to a debt collection agency
or consider further action.

Yours faithfully,
Customer Services Team",
    letter_type: "debt_collection",
    amounts: &["963.70"],
    dates: &["2026-04-04", "2026-04-18"],
    references: &["123456789", "88776655"],
    sort_codes: &[],
    sender: "Lowell Financial Ltd",
};

/// A county court claim.
pub const COUNTY_COURT: Letter = Letter {
    name: "county court claim",
    text: "In the County Court Business Centre
Claim Form
Claim number: K9QZ1234
Issue date: 21 January 2026

Claimant: Cabot Financial (UK) Limited
Defendant: Mr Peter Brown

Brief details of claim:
The claimant claims the sum of £3,204.88 being monies due under a credit card agreement.
Court fee: £205.00
Legal representative's costs: £80.00
Total amount: £3,489.88

You must respond within 14 days of service or judgment may be entered against you.
A County Court Judgment (CCJ) may make it harder to get credit.",
    letter_type: "county_court",
    amounts: &["3204.88", "205.00", "80.00", "3489.88"],
    dates: &["2026-01-21"],
    references: &["K9QZ1234"],
    sort_codes: &[],
    sender: "Cabot Financial (UK) Limited",
};

/// A bank statement.
pub const BANK_STATEMENT: Letter = Letter {
    name: "bank statement",
    text: "Barclays Bank UK PLC
Statement of account
Sort code 20-45-77   Account number 43218765
Statement date 30 September 2026
Period 1 September 2026 to 30 September 2026

Date        Description                 Paid out    Paid in    Balance
01 Sep      Balance brought forward                            -£145.20
05 Sep      Universal Credit                        £612.40    £467.20
08 Sep      Rent standing order          £450.00               £17.20
15 Sep      Overdraft fee                £12.00                £5.20
Balance carried forward                                        £5.20",
    letter_type: "bank_statement",
    amounts: &["-145.20", "612.40", "450.00", "12.00", "5.20"],
    dates: &["2026-09-30", "2026-09-01"],
    references: &["43218765"],
    sort_codes: &["20-45-77"],
    sender: "Barclays Bank UK PLC",
};

/// A utility arrears letter.
pub const UTILITY: Letter = Letter {
    name: "utility arrears",
    text: "Octopus Energy
Customer account: A-1B2C3D4E
Date: 9th May 2026

Dear Ms Patel,
Your energy account is in arrears.
Your gas and electricity account has a balance of £528.19 owing.
Please pay at least £60.00 by 23rd May 2026 or call us to set up a payment plan.
If we cannot agree a plan we may need to fit a prepayment meter.",
    letter_type: "utility",
    amounts: &["528.19", "60.00"],
    dates: &["2026-05-09", "2026-05-23"],
    references: &["A-1B2C3D4E"],
    sort_codes: &[],
    sender: "Octopus Energy",
};

/// Every letter above.
pub const ALL: [Letter; 6] = [
    COUNCIL_TAX,
    UNIVERSAL_CREDIT,
    DEBT_COLLECTION,
    COUNTY_COURT,
    BANK_STATEMENT,
    UTILITY,
];

/// A council tax final notice whose print lost a decimal point (`£1,482 37`), as a phone photo's
/// OCR does: `extract` must read it as £1,482.37 and say it may be misread, never £1,482.00.
/// Not in [`ALL`]: its amount is right only with the flag.
pub const SMUDGED_FINAL_NOTICE: Letter = Letter {
    name: "smudged final notice",
    text: "Northfield Borough Council
Council Tax Section, PO Box 4471, Northfield NF2 8QT
Account Reference: 70044321K
Date: 2 April 2026

Mr A Jones
4 Mill Lane
Northfield NF3 1JJ

COUNCIL TAX FINAL NOTICE

Dear Mr Jones,
You have not paid your council tax instalments as they fell due.
The amount now outstanding is £1,482 37
You must pay this in full within 7 days.
If it is not paid we will apply to the Magistrates Court for a liability order.

Yours sincerely,
Revenues Manager",
    letter_type: "council_tax",
    amounts: &["1482.37"],
    dates: &["2026-04-02"],
    references: &["70044321K"],
    sort_codes: &[],
    sender: "Northfield Borough Council",
};

/// Letters for particular tests, beside [`ALL`].
pub const EXTRA: [Letter; 1] = [SMUDGED_FINAL_NOTICE];
