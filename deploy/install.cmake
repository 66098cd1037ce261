# install.cmake - install rules (included from the top-level CMakeLists.txt).
#
#   cmake --install BUILD_DIR [--prefix PREFIX]      (default prefix /usr/local)
#
# puts `greta` and the three stage binaries it starts from its own directory
# into PREFIX/bin (deploy/systemd/greta@.service runs /usr/local/bin/greta),
# and the deployment files (systemd units, drop-ins, sysusers entry, example
# environment file, container entrypoint, deploy/README.md) into
# PREFIX/share/doc/greta/deploy.
include(GNUInstallDirs)

set(GRETA_INSTALL_PROGRAMS greta greta-tokenizer greta-sampler greta-gpu-worker)
# Libraries outside the system directories (libcudart under /usr/local/cuda,
# libamdhip64 under /opt/rocm) stay found after installation: the installed
# binaries keep the directories they were linked from as RUNPATH.
set_target_properties(${GRETA_INSTALL_PROGRAMS} PROPERTIES INSTALL_RPATH_USE_LINK_PATH ON)
install(TARGETS ${GRETA_INSTALL_PROGRAMS} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

set(GRETA_INSTALL_DEPLOY_DIR ${CMAKE_INSTALL_DATADIR}/doc/greta/deploy)
install(FILES ${CMAKE_CURRENT_LIST_DIR}/README.md DESTINATION ${GRETA_INSTALL_DEPLOY_DIR})
install(FILES
  ${CMAKE_CURRENT_LIST_DIR}/systemd/greta@.service
  ${CMAKE_CURRENT_LIST_DIR}/systemd/greta.target
  ${CMAKE_CURRENT_LIST_DIR}/systemd/greta.sysusers
  ${CMAKE_CURRENT_LIST_DIR}/systemd/example.env
  ${CMAKE_CURRENT_LIST_DIR}/systemd/gpu-cuda.conf
  ${CMAKE_CURRENT_LIST_DIR}/systemd/gpu-rocm.conf
  ${CMAKE_CURRENT_LIST_DIR}/systemd/restart-backoff.conf
  ${CMAKE_CURRENT_LIST_DIR}/systemd/restart-policy.txt
  DESTINATION ${GRETA_INSTALL_DEPLOY_DIR}/systemd)
install(PROGRAMS ${CMAKE_CURRENT_LIST_DIR}/container/entrypoint.sh
  DESTINATION ${GRETA_INSTALL_DEPLOY_DIR}/container)
