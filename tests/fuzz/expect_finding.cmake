# Runs FUZZER on a copy of CORPUS for at most SECONDS and fails unless it reports a finding (a
# sanitizer error or an abort of the target): the planted-bug test. The corpus is copied so the
# mutant's new inputs never enter the committed one.
#   cmake -DFUZZER=... -DCORPUS=... -DSECONDS=... -DWORK=... -P expect_finding.cmake
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}/corpus")
file(GLOB seeds "${CORPUS}/*")
if(seeds)
  file(COPY ${seeds} DESTINATION "${WORK}/corpus")
endif()
execute_process(
  COMMAND "${FUZZER}" -max_total_time=${SECONDS} -timeout=30 "-artifact_prefix=${WORK}/" "${WORK}/corpus"
  RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(status EQUAL 0)
  message(FATAL_ERROR "the fuzzer ran ${SECONDS} s without finding the planted bug")
endif()
string(REGEX MATCH "ERROR: (AddressSanitizer|UndefinedBehaviorSanitizer|libFuzzer)[^\n]*|pixcon fuzz_loss: [^\n]*|runtime error: [^\n]*" finding "${err}")
if(NOT finding)
  message(FATAL_ERROR "the fuzzer exited with ${status} but reported no finding:\n${err}")
endif()
message(STATUS "planted bug found: ${finding}")
