"""Action-based distribution functions (DF families, composite DFs, INI reader)."""
from .families import (DF_TYPES, DistributionFunction, DoublePowerLaw, NewDoublePowerLaw, NewExponential,
                       QuasiIsothermal, SinDoublePowerLaw, TaperExp, cole_binney_zeta, df_from_section)

__all__ = ["DistributionFunction", "NewExponential", "TaperExp", "NewDoublePowerLaw", "SinDoublePowerLaw",
           "DoublePowerLaw", "QuasiIsothermal", "cole_binney_zeta", "df_from_section", "DF_TYPES"]
