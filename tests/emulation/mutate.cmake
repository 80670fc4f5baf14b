# Writes OUT = IN with the first occurrence of OLD replaced by NEW (a planted bug); fails when
# OLD is not found, so a mutant never silently equals the original.
# cmake -DIN=... -DOUT=... -DOLD=... -DNEW=... -P mutate.cmake
file(READ "${IN}" text)
string(FIND "${text}" "${OLD}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "mutate.cmake: pattern not found in ${IN}: ${OLD}")
endif()
string(LENGTH "${OLD}" len)
string(SUBSTRING "${text}" 0 ${at} head)
math(EXPR rest_at "${at} + ${len}")
string(SUBSTRING "${text}" ${rest_at} -1 tail)
file(WRITE "${OUT}" "${head}${NEW}${tail}")
